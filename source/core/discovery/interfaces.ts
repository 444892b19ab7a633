// `ip -j addr` / `ip -j route` parsing and the public/private classification of interfaces.
import {isPrivateAddress} from '../addresses.js';
import type {HostFacts} from '../model.js';
import type {DiscoveredInterface, InterfaceAddress, InterfaceInfo, RouteInfo} from './types.js';

export class DiscoveryParseError extends Error {
  override readonly name = 'DiscoveryParseError';
}

function parseJsonArray(text: string, what: string): unknown[] {
  const trimmed = text.trim();
  if (trimmed === '') return [];
  let json: unknown;
  try {
    json = JSON.parse(trimmed);
  } catch {
    throw new DiscoveryParseError(`${what}: not JSON (does this server's iproute2 support -j?)`);
  }
  if (!Array.isArray(json)) throw new DiscoveryParseError(`${what}: expected a JSON array`);
  return json;
}

const record = (value: unknown): Record<string, unknown> =>
  typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};

/** Parses `ip -j addr show`. */
export function parseIpAddr(text: string): InterfaceInfo[] {
  return parseJsonArray(text, 'ip -j addr').map((item) => {
    const link = record(item);
    const flags = Array.isArray(link['flags']) ? link['flags'].map(String) : [];
    const addrInfo = Array.isArray(link['addr_info']) ? link['addr_info'] : [];
    const allAddresses: InterfaceAddress[] = addrInfo.flatMap((raw): InterfaceAddress[] => {
      const info = record(raw);
      const address = info['local'];
      const family = info['family'] === 'inet' ? 4 : info['family'] === 'inet6' ? 6 : undefined;
      if (typeof address !== 'string' || family === undefined) return [];
      return [
        {
          address,
          family,
          prefixLength: typeof info['prefixlen'] === 'number' ? info['prefixlen'] : family === 4 ? 32 : 128,
          scope: typeof info['scope'] === 'string' ? info['scope'] : 'global',
        },
      ];
    });
    const mac = typeof link['address'] === 'string' ? link['address'] : undefined;
    return {
      name: String(link['ifname'] ?? ''),
      up: flags.includes('UP'),
      loopback: flags.includes('LOOPBACK') || link['link_type'] === 'loopback',
      ...(mac === undefined ? {} : {mac}),
      allAddresses,
    };
  });
}

/** Parses `ip -j route show` (either family). */
export function parseIpRoute(text: string): RouteInfo[] {
  return parseJsonArray(text, 'ip -j route').map((item) => {
    const route = record(item);
    const nexthops = Array.isArray(route['nexthops']) ? route['nexthops'].map(record) : [];
    const dev = typeof route['dev'] === 'string' ? route['dev'] : (nexthops[0]?.['dev'] as string | undefined);
    const gateway = typeof route['gateway'] === 'string' ? route['gateway'] : (nexthops[0]?.['gateway'] as string | undefined);
    return {
      dst: String(route['dst'] ?? ''),
      ...(typeof dev === 'string' ? {dev} : {}),
      ...(typeof gateway === 'string' ? {gateway} : {}),
      ...(typeof route['metric'] === 'number' ? {metric: route['metric']} : {}),
    };
  });
}

export function isLinkLocal(address: InterfaceAddress): boolean {
  if (address.scope === 'link' || address.scope === 'host') return true;
  if (address.family === 4) return address.address.startsWith('169.254.') || address.address.startsWith('127.');
  return /^fe[89ab][0-9a-f]:/i.test(address.address) || address.address === '::1';
}

/** Container, VPN and virtual bridges: never the fleet's public or private network. */
const VIRTUAL_INTERFACE = /^(docker\d*|br-[0-9a-f]+|veth|virbr|cni|flannel|cali|vxlan|kube-|tunl|tun|tap|wg|lxcbr|lxdbr|podman|zt|tailscale|weave|cilium)/;

export interface Classification {
  readonly interfaces: DiscoveredInterface[];
  readonly facts: HostFacts;
  readonly warnings: string[];
}

/**
 * Public = holds the default route (and global addresses); private = RFC 1918 / 100.64/10 / ULA on an
 * interface without the default route. Ambiguous cases are flagged, never guessed silently.
 */
export function classifyInterfaces(
  links: readonly InterfaceInfo[],
  routes4: readonly RouteInfo[],
  routes6: readonly RouteInfo[],
  sshPort?: number,
): Classification {
  const warnings: string[] = [];
  const defaultDevs4 = new Set(routes4.filter((route) => route.dst === 'default' && route.dev).map((route) => route.dev!));
  const defaultDevs6 = new Set(routes6.filter((route) => route.dst === 'default' && route.dev).map((route) => route.dev!));
  type Draft = {info: InterfaceInfo; globals: InterfaceAddress[]; side: DiscoveredInterface['side']; note?: string};
  const drafts: Draft[] = links.map((info) => ({
    info,
    globals: info.allAddresses.filter((address) => !isLinkLocal(address)),
    side: 'ignore',
  }));

  const candidates = drafts.filter((draft) => {
    if (draft.info.loopback) return false;
    if (draft.globals.length === 0) return false;
    if (VIRTUAL_INTERFACE.test(draft.info.name)) {
      draft.note = 'container or virtual interface';
      return false;
    }
    return true;
  });

  const hasDefault = (draft: Draft) => defaultDevs4.has(draft.info.name) || defaultDevs6.has(draft.info.name);
  const hasNonPrivate = (draft: Draft) => draft.globals.some((address) => !isPrivateAddress(address.address));

  let publicDrafts = candidates.filter(hasDefault);
  if (publicDrafts.length === 0) {
    if (defaultDevs4.size === 0 && defaultDevs6.size === 0) {
      warnings.push('no default route: cannot tell which interface faces the internet');
    }
    // No default route on a candidate: an interface with public addresses is still the public side.
    publicDrafts = candidates.filter(hasNonPrivate);
    for (const draft of publicDrafts) draft.note = 'public addresses but no default route';
  }
  if (publicDrafts.length > 1) {
    const names = publicDrafts.map((draft) => draft.info.name);
    warnings.push(`several interfaces look public (${names.join(', ')}); using ${names[0]} — check it`);
    for (const draft of publicDrafts.slice(1)) draft.note = `also looks public; ${names[0]} was chosen`;
    publicDrafts = publicDrafts.slice(0, 1);
  }
  const publicDraft = publicDrafts[0];
  if (publicDraft) {
    publicDraft.side = 'public';
    if (!hasNonPrivate(publicDraft)) {
      publicDraft.note = 'default route but only private addresses (behind NAT?)';
      warnings.push(
        `${publicDraft.info.name} holds the default route but has only private addresses (a NATed host?); it is taken as the public side — check it`,
      );
    }
  }

  const privateCandidates = candidates.filter(
    (draft) => draft !== publicDraft && draft.globals.some((address) => isPrivateAddress(address.address)),
  );
  if (privateCandidates.length > 1) {
    const names = privateCandidates.map((draft) => draft.info.name);
    warnings.push(`several candidate private interfaces (${names.join(', ')}); using ${names[0]} — check it`);
    for (const draft of privateCandidates.slice(1)) draft.note = `also a candidate private interface; ${names[0]} was chosen`;
  }
  const privateDraft = privateCandidates[0];
  if (privateDraft) {
    privateDraft.side = 'private';
    if (privateCandidates.length > 1) privateDraft.note = 'one of several candidate private interfaces';
    if (privateDraft.globals.some((address) => !isPrivateAddress(address.address))) {
      privateDraft.note = 'also holds public addresses';
      warnings.push(`${privateDraft.info.name} (private) also holds public addresses — check it`);
    }
  } else {
    warnings.push('no private interface found (no RFC 1918 / 100.64/10 / ULA address off the default route)');
  }
  if (!publicDraft) warnings.push('no public interface found');
  for (const draft of candidates) {
    if (draft.side === 'ignore' && !draft.note) draft.note = 'neither public nor private: left alone';
  }
  for (const draft of drafts) {
    if ((draft.side !== 'ignore') && !draft.info.up) {
      warnings.push(`${draft.info.name} is down`);
    }
  }

  const ordered = (addresses: readonly InterfaceAddress[]) =>
    [...addresses.filter((address) => address.family === 4), ...addresses.filter((address) => address.family === 6)];
  const interfaces: DiscoveredInterface[] = drafts
    .filter((draft) => !draft.info.loopback)
    .map((draft) => {
      const globals = ordered(draft.globals);
      return {
        name: draft.info.name,
        addresses: globals.map((address) => address.address),
        cidrs: globals.map((address) => `${address.address}/${address.prefixLength}`),
        side: draft.side,
        ...(draft.note === undefined ? {} : {note: draft.note}),
        defaultRoute: {v4: defaultDevs4.has(draft.info.name), v6: defaultDevs6.has(draft.info.name)},
      };
    });
  const publicInterface = interfaces.find((item) => item.side === 'public');
  const privateInterface = interfaces.find((item) => item.side === 'private');
  const facts: HostFacts = {
    interfaces: {
      ...(publicInterface ? {public: publicInterface.name} : {}),
      ...(privateInterface ? {private: privateInterface.name} : {}),
    },
    addresses: {public: publicInterface?.addresses ?? [], private: privateInterface?.addresses ?? []},
    ...(sshPort === undefined ? {} : {sshPort}),
  };
  return {interfaces, facts, warnings};
}
