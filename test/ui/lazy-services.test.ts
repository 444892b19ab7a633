import {describe, expect, it} from 'vitest';
import {lazyServices} from '../../source/ui/lazy-services.js';
import {createFakeServices, deferred, MANAGED_FLEET} from './fakes.js';
import type {WizardServices} from '../../source/ui/services.js';

describe('the services loaded after the first frame', () => {
  it('load once, on the first call, and every call waits for them', async () => {
    const fake = createFakeServices({fleet: MANAGED_FLEET});
    const loaded = deferred<WizardServices>();
    let loads = 0;
    const services = lazyServices(fake.prompter, () => {
      loads += 1;
      return loaded.promise;
    });
    expect(loads).toBe(0);
    expect(() => services.roleNames(MANAGED_FLEET)).toThrow(/still loading/);
    const fleet = services.loadFleet();
    const problems = services.validateFleet({hosts: [{name: 'bad name', ssh: 'x', roles: []}]});
    expect(loads).toBe(1);
    loaded.resolve(fake.services);
    expect((await fleet).fleet).toEqual(MANAGED_FLEET);
    expect(await problems).toEqual([expect.stringMatching(/^hosts\[0\]\.name/)]);
    expect(services.roleNames(MANAGED_FLEET)).toContain('db');
    await services.close();
    expect(fake.calls.closed).toBe(1);
    expect(loads).toBe(1);
  });

  it('close before anything was loaded loads nothing', async () => {
    let loads = 0;
    const services = lazyServices(createFakeServices().prompter, async () => {
      loads += 1;
      return createFakeServices().services;
    });
    await services.close();
    expect(loads).toBe(0);
  });
});
