// Backend auto, the default: each host gets nftables where its nft takes a table like ours (nft -c
// of a probe table, nothing loaded), else iptables. The fixed command that checks it runs here in a
// real sh against stand-ins for nft (the real kernel check is proved in test/lab/nft-backend.test.ts).
import {execFile} from 'node:child_process';
import {chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {afterAll, describe, expect, it} from 'vitest';
import {chooseBackends, NFT_PROBE_TABLE, resolveBackend} from '../../source/core/backend.js';
import {firewallFacts} from '../../source/core/discovery/index.js';
import {readNativeRulesets} from '../../source/remote/native-tables.js';
import type {Connector} from '../../source/remote/types.js';

const dir = mkdtempSync(path.join(tmpdir(), 'iw-backend-choice-'));
afterAll(() => rmSync(dir, {recursive: true, force: true}));

/** A connector whose every host runs the command in a local sh with only `bin` (and /usr/bin, /bin) on PATH. */
function localConnector(bin: string): Connector {
  return {
    connect: async (target) => ({
      name: target.name,
      route: 'local',
      exec: (command) =>
        new Promise((resolve) => {
          execFile('sh', ['-c', command], {env: {PATH: `${bin}:/usr/bin:/bin`}}, (error, stdout, stderr) => {
            resolve({code: error ? Number((error as {code?: number}).code ?? 1) : 0, stdout, stderr});
          });
        }),
      close: async () => undefined,
    }),
    closeAll: async () => undefined,
  };
}

/** A stand-in nft: `-c -f /dev/stdin` keeps what it was given and exits `checkExit` (printing `checkError`); `-j list ruleset` prints an empty ruleset. */
function fakeNft(name: string, checkExit: number, checkError = ''): string {
  const bin = path.join(dir, name);
  mkdirSync(bin);
  writeFileSync(
    path.join(bin, 'nft'),
    `#!/bin/sh
if [ "$1" = -c ]; then cat > "${bin}/checked"; printf '%s\\n' '${checkError}' >&2; exit ${checkExit}; fi
[ "$1" = -j ] && printf '%s\\n' '{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}]}'
`,
  );
  chmodSync(path.join(bin, 'nft'), 0o755);
  return bin;
}

describe('backend auto is the default', () => {
  it('gives nftables only where nft took the probe table; iptables where it did not or is not known', () => {
    expect(resolveBackend(undefined, true)).toBe('nftables');
    expect(resolveBackend(undefined, false)).toBe('iptables');
    expect(resolveBackend(undefined, undefined)).toBe('iptables');
    expect(resolveBackend('iptables', true)).toBe('iptables');
    expect(resolveBackend('nftables', false)).toBe('nftables');
  });

  it('refuses --backend nftables on a host whose nft cannot hold our table, saying why; auto gives it iptables', () => {
    const withoutNft = new Map([['old', 'cannot load a table using what ours uses there (nft -c: Error: Could not process rule: No such file or directory)']]);
    const names = ['old', 'new', 'unread'];
    const auto = chooseBackends(names, undefined, withoutNft, new Set(['old', 'new']));
    expect(Object.fromEntries(auto.backends)).toEqual({old: 'iptables', new: 'nftables', unread: 'iptables'});
    expect(auto.refusals).toEqual([]);
    const forced = chooseBackends(names, 'nftables', withoutNft, new Set(['old', 'new']));
    expect(forced.refusals).toEqual([
      'old: the nftables backend needs nft, which cannot load a table using what ours uses there (nft -c: Error: Could not process rule: No such file or directory) (--backend auto uses iptables on such a host)',
    ]);
  });
});

describe('the check on each host before a batch (CHECK_AND_READ_NFT in a real sh)', () => {
  const targets = [{name: 'web', ssh: 'web'}];

  it('nft takes the probe table: usable, and the ruleset after it is read', async () => {
    const bin = fakeNft('takes', 0);
    const read = await readNativeRulesets(localConnector(bin), targets);
    expect(read.unread).toEqual([]);
    expect(read.withoutNft.size).toBe(0);
    expect(read.rulesets.get('web')).toEqual({tables: []});
    // What nft was asked to check is the probe table, whole.
    expect(readFileSync(path.join(bin, 'checked'), 'utf8')).toBe(`${NFT_PROBE_TABLE}\n`);
  });

  it('nft refuses it (a kernel without what we use): not usable, with nft\'s error line; the ruleset is still read', async () => {
    const bin = fakeNft('refuses', 1, '/dev/stdin:1:200-230: Error: Could not process rule: No such file or directory');
    const read = await readNativeRulesets(localConnector(bin), targets);
    expect(read.withoutNft.get('web')).toBe('cannot load a table using what ours uses there (nft -c: /dev/stdin:1:200-230: Error: Could not process rule: No such file or directory)');
    expect(read.rulesets.get('web')).toEqual({tables: []});
    expect(chooseBackends(['web'], undefined, read.withoutNft, new Set(read.rulesets.keys())).backends.get('web')).toBe('iptables');
  });

  it('no nft at all: not installed', async () => {
    const bin = path.join(dir, 'none');
    mkdirSync(bin);
    const read = await readNativeRulesets(localConnector(bin), targets);
    expect(read.withoutNft.get('web')).toBe('is not installed there');
  });

  it('the probe table can be pasted between single quotes', () => {
    expect(NFT_PROBE_TABLE).not.toMatch(/['\n]/);
  });
});

describe('discovery records what auto would choose', () => {
  const base = {iptablesVersion: 'iptables v1.8.9 (nf_tables)', iptablesSave: '', ip6tablesSave: '', legacyTables: '', interfaceNames: ['eth0']};
  it('from the nft -c section, else from whether nft is there', () => {
    expect(firewallFacts({...base, commands: 'nft /usr/sbin/nft', nftCheck: {text: '', rc: 0}}).facts).toMatchObject({nftUsable: true});
    const refused = firewallFacts({...base, commands: 'nft /usr/sbin/nft', nftCheck: {text: 'x\n/dev/stdin:1:5: Error: Could not process rule: Operation not supported\ny', rc: 1}}).facts;
    expect(refused.nftUsable).toBe(false);
    expect(refused.nftProblem).toContain('Error: Could not process rule: Operation not supported');
    expect(firewallFacts({...base, commands: 'iptables /usr/sbin/iptables'}).facts).toMatchObject({nftUsable: false, nftProblem: 'nft is not installed'});
    // Recorded before the check existed: not known.
    expect(firewallFacts({...base, commands: 'nft /usr/sbin/nft'}).facts.nftUsable).toBeUndefined();
  });
});
