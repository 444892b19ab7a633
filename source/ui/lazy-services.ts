// The wizard's services loaded after its first frame: the SSH, compiler and store modules take
// longer to load than Ink itself, and the fleet home needs none of them to draw.
import {systemClock, type WizardServices} from './services.js';
import type {Prompter} from '../remote/types.js';

type Methods = Omit<WizardServices, 'clock' | 'prompter'>;

/**
 * Services whose methods wait for `load`. The synchronous ones, roleNames and peerPortSuggestions,
 * are used by the roles screen, reached only after a discover has waited for the load.
 */
export function lazyServices(prompter: Prompter, load: () => Promise<WizardServices>): WizardServices {
  let loaded: WizardServices | undefined;
  let loading: Promise<WizardServices> | undefined;
  const ready = (): Promise<WizardServices> =>
    (loading ??= load().then((services) => (loaded = services)));
  const later =
    <Name extends keyof Methods>(name: Name) =>
    async (...args: Parameters<Methods[Name]>): Promise<Awaited<ReturnType<Methods[Name]>>> => {
      const services = await ready();
      return (services[name] as (...given: Parameters<Methods[Name]>) => Awaited<ReturnType<Methods[Name]>>)(...args);
    };
  return {
    clock: systemClock,
    prompter,
    loadFleet: later('loadFleet'),
    saveFleet: later('saveFleet'),
    importFleet: later('importFleet'),
    exportFleet: later('exportFleet'),
    validateFleet: later('validateFleet'),
    sshHostSuggestions: later('sshHostSuggestions'),
    roleNames(fleet) {
      if (!loaded) throw new Error('the wizard is still loading');
      return loaded.roleNames(fleet);
    },
    peerPortSuggestions(fleet, hosts) {
      if (!loaded) throw new Error('the wizard is still loading');
      return loaded.peerPortSuggestions(fleet, hosts);
    },
    status: later('status'),
    discover: later('discover'),
    preview: later('preview'),
    apply: later('apply'),
    undo: later('undo'),
    keep: later('keep'),
    installPersistence: later('installPersistence'),
    rollback: later('rollback'),
    verifyExpired: later('verifyExpired'),
    counters: later('counters'),
    dropLog: later('dropLog'),
    // Nothing loaded, nothing to close.
    close: async () => loaded?.close(),
  };
}
