// The remedy for another firewall, client side: the one fixed command, the steps on stdin, and
// the check afterwards that the planned flows really pass (else the host fails and the batch
// rolls back). The agent's side is proved in the lab (test/lab/other-firewall.test.ts).
import {readFileSync} from 'node:fs';
import {describe, expect, it} from 'vitest';
import {factsFromInventory, parseInventoryText} from '../../source/core/inventory.js';
import type {HostFacts} from '../../source/core/model.js';
import {buildPlan} from '../../source/core/plan.js';
import {CHECK_AND_READ_NFT, READ_UFW_FILTERS} from '../../source/remote/native-tables.js';
import {RemedyError, remedyAfterLoad} from '../../source/remote/remedy.js';
import type {ExecOptions, ExecResult, RemoteHost} from '../../source/remote/types.js';

function seedPlan() {
  const file = new URL('../../fixtures/inventories/seed-with-addresses.json', import.meta.url);
  const inventory = parseInventoryText(readFileSync(file, 'utf8'), 'seed-with-addresses.json');
  const facts = new Map<string, HostFacts>(inventory.hosts.map((host) => [host.name, factsFromInventory(host) as HostFacts]));
  return buildPlan(inventory, facts);
}

const FIREWALLD_JSON = readFileSync(new URL('../../fixtures/nft/firewalld-rocky9.json', import.meta.url), 'utf8');

/** A server that answers the remedy with `remedyCode` and lists `ruleset` afterwards. */
function fakeServer(remedyCode: number, ruleset: string): {remote: RemoteHost; calls: {command: string; stdin: string}[]} {
  const calls: {command: string; stdin: string}[] = [];
  const remote: RemoteHost = {
    name: 'wordpress-1',
    route: 'fake',
    async exec(command: string, options?: ExecOptions): Promise<ExecResult> {
      calls.push({command, stdin: String(options?.stdin ?? '')});
      if (command === CHECK_AND_READ_NFT) return {code: 0, stdout: `nft-usable\n${ruleset}`, stderr: ''};
      if (command === READ_UFW_FILTERS) return {code: 0, stdout: 'no-ufw\n', stderr: ''};
      return remedyCode === 0 ? {code: 0, stdout: 'remedied\n', stderr: ''} : {code: remedyCode, stdout: '', stderr: 'agent: firewalld could not be stopped\n'};
    },
    async close() {},
  };
  return {remote, calls};
}

describe('the remedy after the load', () => {
  const plan = seedPlan();
  const steps = ['open firewalld 4 10.132.0.11 tcp 80 80', 'open firewalld 6 fd00:132::11 tcp 443 443'];
  const remedies = new Map([['wordpress-1', steps]]);
  const after = remedyAfterLoad(remedies, plan.hosts, () => plan.access);

  it('sends one fixed command, the batch checked, the steps on stdin', async () => {
    const server = fakeServer(0, '{"nftables": []}');
    expect(await after('wordpress-1', server.remote, '20261203-120000-abcdef')).toBe('2 flow(s) opened in firewalld; the planned flows pass');
    expect(server.calls[0]).toEqual({command: 'sh /var/lib/isolate-wizard/agent.sh remedy 20261203-120000-abcdef', stdin: `${steps.join('\n')}\n`});
    await expect(after('wordpress-1', server.remote, 'x; rm -rf /')).rejects.toThrow(/invalid batch id/);
  });

  it('fails the host when firewalld still drops a planned flow afterwards, naming them', async () => {
    const server = fakeServer(0, FIREWALLD_JSON);
    const failure = after('wordpress-1', server.remote, '20261203-120000-abcdef');
    await expect(failure).rejects.toBeInstanceOf(RemedyError);
    await expect(failure).rejects.toThrow(/still drops planned flows, so the batch is rolled back: wordpress-1: firewalld \(table inet firewalld\) drops what the plan opens: tcp\/80,443 from haproxy-www/);
  });

  it('fails the host when the agent cannot take a step, saying why', async () => {
    await expect(after('wordpress-1', fakeServer(1, '{"nftables": []}').remote, '20261203-120000-abcdef')).rejects.toThrow(/the remedy for the other firewall failed: firewalld could not be stopped/);
  });

  it('does nothing on a host without a remedy', async () => {
    const server = fakeServer(0, FIREWALLD_JSON);
    expect(await after('mysql-1', server.remote, '20261203-120000-abcdef')).toBeUndefined();
    expect(server.calls).toEqual([]);
  });
});
