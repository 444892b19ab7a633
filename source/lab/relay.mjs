// Relays stdin/stdout to one TCP connection; started inside the operator namespace so that code in
// the test process (root namespace) can reach lab addresses through it.
// Usage: node relay.mjs <address> <port>. Says "connected" on stderr once connected; exits 1 on failure.
import net from 'node:net';

const [address = '', port = ''] = process.argv.slice(2);
const socket = net.connect({host: address, port: Number(port)});
const connectTimer = setTimeout(() => {
  process.stderr.write(`relay: connect to ${address} port ${port} timed out\n`);
  process.exit(1);
}, 5_000);
socket.once('connect', () => {
  clearTimeout(connectTimer);
  process.stderr.write('connected\n');
  process.stdin.pipe(socket);
  socket.pipe(process.stdout);
});
socket.on('error', (error) => {
  process.stderr.write(`relay: ${error.message}\n`);
  process.exit(1);
});
socket.on('close', () => process.exit(0));
