import {afterEach, describe, expect, it} from 'vitest';

// Force chalk to colour (vitest's stdout is not a terminal) before Ink is loaded, so the
// difference NO_COLOR makes is visible. Dynamic imports: static ones would load Ink first.
process.env['FORCE_COLOR'] = '1';
const {cleanup, renderWizard} = await import('./harness.js');
const {MANAGED_FLEET} = await import('./fakes.js');

afterEach(() => cleanup());

// eslint-disable-next-line no-control-regex
const COLOUR = /\u001B\[(3[0-7]|9[0-7])m/;

describe('NO_COLOR', () => {
  it('draws colours normally', async () => {
    const wizard = await renderWizard({fleet: MANAGED_FLEET, states: {'tunnel-1': {kind: 'locked'}}}, false);
    expect(await wizard.waitFor('locked down')).toMatch(COLOUR);
  });

  it('drops every colour when NO_COLOR is set', async () => {
    const wizard = await renderWizard({fleet: MANAGED_FLEET, states: {'tunnel-1': {kind: 'locked'}}}, true);
    expect(await wizard.waitFor('locked down')).not.toMatch(COLOUR);
  });
});
