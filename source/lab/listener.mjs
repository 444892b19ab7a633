// The role-port services of one lab server: TCP and UDP listeners on IPv4 and IPv6.
// Usage: node listener.mjs <server name> <tcp ports, comma-separated> <udp ports, comma-separated> [process name]
// Each TCP connection gets the banner "<name> tcp <port>\n", then its data echoed back (so a test can
// tell which server answered and keep a connection open); each UDP datagram is answered with
// "<name> udp <port>\n". Prints "ready" once every socket is bound; exits 1 if one cannot be bound.
import net from 'node:net';
import dgram from 'node:dgram';

const [name = 'server', tcpList = '', udpList = '', program] = process.argv.slice(2);
// What `ss -p` shows for the sockets (e.g. "haproxy"), so discovery sees a named service.
if (program) process.title = program;
const ports = (list) => list.split(',').filter(Boolean).map(Number);

// IPv4 and IPv6 on separate sockets (ipv6Only), so each family is served, and firewalled, on its own.
const families = [
  {address: '0.0.0.0', ipv6Only: false, udpType: 'udp4'},
  {address: '::', ipv6Only: true, udpType: 'udp6'},
];

function listenTcp(port, family) {
  return new Promise((resolve, reject) => {
    const server = net.createServer((socket) => {
      socket.on('error', () => {});
      socket.write(`${name} tcp ${port}\n`);
      socket.pipe(socket);
    });
    server.once('error', reject);
    server.listen({port, host: family.address, ipv6Only: family.ipv6Only}, resolve);
  });
}

function listenUdp(port, family) {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket({type: family.udpType, ipv6Only: family.ipv6Only});
    socket.on('message', (_message, peer) => {
      socket.send(`${name} udp ${port}\n`, peer.port, peer.address);
    });
    socket.once('error', reject);
    socket.bind(port, family.address, resolve);
  });
}

try {
  const bindings = [];
  for (const family of families) {
    for (const port of ports(tcpList)) bindings.push(listenTcp(port, family));
    for (const port of ports(udpList)) bindings.push(listenUdp(port, family));
  }
  await Promise.all(bindings);
  process.stdout.write('ready\n');
} catch (error) {
  process.stderr.write(`listener ${name}: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}
