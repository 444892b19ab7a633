// The wizard with fake services, for real-terminal tests: `node --import tsx fake-wizard.tsx 40`
// renders a fleet of 40 servers in the terminal it runs in; q quits.

import {render} from 'ink';
import {App} from '../../../source/ui/app.js';
import {createFakeServices, generatedFleet} from '../fakes.js';

const servers = Number(process.argv[2] ?? '40');
const fake = createFakeServices({fleet: generatedFleet(servers), states: {'host-001': {kind: 'locked', detail: 'since 2026-12-01 10:00 UTC'}}});
const instance = render(<App services={fake.services} prompts={fake.prompter} noColor={false} onExit={() => undefined} />, {exitOnCtrlC: false});
await instance.waitUntilExit();
process.exit(0);
