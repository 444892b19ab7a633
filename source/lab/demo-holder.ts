// The process that holds `isolate-wizard demo`'s lab (started detached by demo.ts): takes the
// machine's demo slot, builds the seed fleet, writes the inventory and the state file, reports the
// lab as one JSON line on stdout, then lives until `demo --down` (SIGTERM), when the lab's own
// signal handler tears everything down.
import {rmSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {claimDemoSlot, DEMO_HOSTS, DEMO_INVENTORY, DEMO_STATE_PATH, recordDemoLab, type DemoLab} from './demo.js';
import {createLab} from './lab.js';
import {currentOwner} from './namespaces.js';

let claimed = false;
try {
  const taken = claimDemoSlot();
  if (taken) throw new Error(taken);
  claimed = true;
  const lab = await createLab({hosts: DEMO_HOSTS});
  const inventory = join(lab.home, 'fleet.json');
  writeFileSync(inventory, `${JSON.stringify(DEMO_INVENTORY, null, 2)}\n`, {mode: 0o600});
  const demo: DemoLab = {
    id: lab.id,
    dir: lab.dir,
    home: lab.home,
    inventory,
    operatorNetns: lab.operator.netns,
    servers: [...lab.hosts.keys()],
    holder: currentOwner(),
  };
  recordDemoLab(demo);
  process.stdout.write(`${JSON.stringify({lab: demo})}\n`);
  setInterval(() => {}, 1 << 30);
} catch (error) {
  // createLab removed what it had made; the slot is free again.
  if (claimed) rmSync(DEMO_STATE_PATH, {force: true});
  process.stdout.write(`${JSON.stringify({error: error instanceof Error ? error.message.split('\n')[0] : String(error)})}\n`);
  process.exitCode = 1;
}
