import {describe, expect, it} from 'vitest';
import {factsFromDiscovery, hostsWithoutFacts, initialState, parseOpeningText, reducer} from '../../source/ui/state.js';
import {discovered, MANAGED_FLEET, SEED_FLEET} from './fakes.js';

describe('parseOpeningText', () => {
  it('reads PORT[-PORT][/proto] [from SOURCE] with internet as the default source', () => {
    expect(parseOpeningText('8443')).toEqual({port: 8443, proto: 'tcp', from: 'internet'});
    expect(parseOpeningText(' 8000-8100/UDP from private ')).toEqual({port: '8000-8100', proto: 'udp', from: 'private'});
    expect(parseOpeningText('3306 from 10.0.0.0/8', 'private')).toEqual({port: 3306, proto: 'tcp', from: '10.0.0.0/8'});
    expect(parseOpeningText('53/udp', 'private')).toEqual({port: 53, proto: 'udp', from: 'private'});
  });

  it('names what is wrong', () => {
    expect(parseOpeningText('0')).toEqual({problem: 'port: 0 is outside 1-65535'});
    expect(parseOpeningText('80-70000')).toEqual({problem: 'port: 70000 is outside 1-65535'});
    expect(parseOpeningText('90-80')).toEqual({problem: 'port: "90-80" is not a port range (first > last)'});
    expect(parseOpeningText('http')).toMatchObject({problem: expect.stringContaining('"http" is not an opening')});
    expect(parseOpeningText('80; rm -rf /')).toMatchObject({problem: expect.stringContaining('is not an opening')});
  });
});

describe('reducer', () => {
  it('writes corrected facts and chosen roles into the draft only, never the saved fleet', () => {
    let state = reducer(initialState(), {type: 'loaded', fleet: SEED_FLEET, settings: {deadlineSeconds: 60}});
    state = reducer(state, {type: 'start-lockdown'});
    state = reducer(state, {type: 'discovered', result: discovered('mysql-1', 14, [3306], ['db'])});
    state = reducer(state, {type: 'set-side', host: 'mysql-1', iface: 'eth1', side: 'ignore'});
    state = reducer(state, {type: 'roles-done'});
    const mysql = state.draft.hosts.find((host) => host.name === 'mysql-1');
    expect(mysql).toMatchObject({roles: ['db'], interfaces: {public: 'eth0'}, addresses: {public: ['203.0.113.14', '2001:db8:100::14'], private: []}});
    expect(state.fleet).toBe(SEED_FLEET);
  });

  it('a failed discovery gives no facts; hosts without facts are listed', () => {
    expect(factsFromDiscovery({host: 'x', ok: false, error: 'refused'})).toBeUndefined();
    expect(hostsWithoutFacts(SEED_FLEET)).toEqual(['tunnel-1', 'haproxy-www', 'mysql-1']);
    expect(hostsWithoutFacts(MANAGED_FLEET)).toEqual([]);
  });

  it('Esc cannot leave the apply or the countdown', () => {
    let state = reducer(initialState(), {type: 'loaded', fleet: MANAGED_FLEET, settings: {deadlineSeconds: 60}});
    state = reducer(state, {type: 'go', screen: 'preview'});
    state = reducer(state, {type: 'apply-started'});
    expect(reducer(state, {type: 'back'}).screen).toBe('apply');
    state = reducer(state, {type: 'apply-outcome-pending', batch: {id: 'b', hosts: [], deadline: 0, checks: []}});
    expect(reducer(state, {type: 'back'}).screen).toBe('countdown');
  });
});
