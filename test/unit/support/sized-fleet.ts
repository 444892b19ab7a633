// A fleet of any size in the forty-server lab's shape (1 bastion, 2 lb, then app and db; the app
// role's peers as the seed's), every address given: for tests of what grows with the fleet.
import {factsFromInventory, validateInventory, type Inventory} from '../../../source/core/inventory.js';
import {buildPlan, type Plan} from '../../../source/core/plan.js';

/** `privateOnly`: no public side (no flow from the internet: nothing a test would try for real from here). */
export function sizedInventory(count: number, {privateOnly = false} = {}): Inventory {
  const hosts = Array.from({length: count}, (_, index) => {
    const role = index === 0 ? 'bastion' : index <= 2 ? 'lb' : index % 3 === 0 ? 'db' : 'app';
    const a = Math.floor(index / 250);
    const b = (index % 250) + 1;
    return {
      name: `${role}-${index}`,
      ssh: `root@10.${a}.0.${b}`,
      roles: [role],
      interfaces: privateOnly ? {private: 'eth1'} : {public: 'eth0', private: 'eth1'},
      addresses: {public: privateOnly ? [] : [`198.19.${a}.${b}`, `2001:db8:1::${(index + 1).toString(16)}`], private: [`10.${a}.0.${b}`, `fd00::${(index + 1).toString(16)}`]},
    };
  });
  return validateInventory({roles: {app: {peers: ['24007-24008', '49152-49251']}}, hosts});
}

/** The plan of an inventory whose addresses are all given (no discovery). */
export function planOf(inventory: Inventory): Plan {
  return buildPlan(inventory, new Map(inventory.hosts.map((entry) => [entry.name, factsFromInventory(entry)!])));
}
