// The settings line that restricts Docker's published ports to the plan: off by default, saved
// into the fleet's options at once (the apply reads it from there).
import {afterEach, describe, expect, it} from 'vitest';
import {cleanup, KEY, renderWizard} from './harness.js';
import {MANAGED_FLEET} from './fakes.js';

afterEach(cleanup);

describe('settings: Docker published ports', () => {
  it('is off by default and toggles restrictPublished in the fleet options', async () => {
    const wizard = await renderWizard({fleet: MANAGED_FLEET});
    await wizard.press('s');
    expect(await wizard.waitFor('Docker published ports')).toMatch(/Docker published ports: plan only\s+off/);
    await wizard.press(KEY.down, KEY.down, KEY.down, KEY.down, KEY.down, KEY.space);
    expect(await wizard.waitFor(/plan only\s+on/)).toMatch(/Docker published ports: plan only\s+on/);
    expect(wizard.stored().fleet.options).toEqual({restrictPublished: true});
  });
});
