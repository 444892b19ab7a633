// A process that builds a small lab, reports it on stdout as one JSON line, then waits to be
// killed: the lab's test uses it to check cleanup after a signal and after a crash (SIGKILL).
import {createLab} from '../../../source/lab/lab.js';

const lab = await createLab({hosts: [{name: 'tunnel-1'}], tenant: false});
const tunnel = lab.hosts.get('tunnel-1');
process.stdout.write(
  `${JSON.stringify({id: lab.id, dir: lab.dir, namespaces: [lab.operator.netns, tunnel?.netns], sshdPid: tunnel?.pids.sshd})}\n`,
);
setInterval(() => {}, 60_000);
