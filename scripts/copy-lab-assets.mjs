// Part of `npm run build`: the lab's files that are not TypeScript (a server's init script, the
// role-port listener, the operator's relay) go next to the compiled lab in dist/lab, where
// source/lab/lab.ts finds them as it finds them next to itself when run from source.
import {copyFileSync, mkdirSync} from 'node:fs';

mkdirSync('dist/lab', {recursive: true});
for (const file of ['server-init.sh', 'listener.mjs', 'relay.mjs']) copyFileSync(`source/lab/${file}`, `dist/lab/${file}`);
