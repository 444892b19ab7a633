// The process that holds `isolate-wizard demo`'s lab (started detached by demo.ts): builds the seed
// fleet, writes the inventory and the state file, reports the lab as one JSON line on stdout, then
// lives until `demo --down` (SIGTERM), when the lab's own signal handler tears everything down.
import {writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {DEMO_HOSTS, DEMO_INVENTORY, DEMO_STATE_PATH, type DemoLab} from './demo.js';
import {createLab} from './lab.js';
import {currentOwner} from './namespaces.js';

try {
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
  writeFileSync(DEMO_STATE_PATH, `${JSON.stringify(demo)}\n`, {mode: 0o600});
  process.stdout.write(`${JSON.stringify({lab: demo})}\n`);
  setInterval(() => {}, 1 << 30);
} catch (error) {
  // createLab removed what it had made.
  process.stdout.write(`${JSON.stringify({error: error instanceof Error ? error.message.split('\n')[0] : String(error)})}\n`);
  process.exitCode = 1;
}
