// Where this machine keeps the wizard's fleet, its settings and the batch records: conf's per-user
// directory under the program's own name (~/.config/isolate-wizard on Linux). Earlier versions used
// conf's default suffix (~/.config/isolate-wizard-nodejs); that directory is moved once.
import {existsSync, renameSync} from 'node:fs';
import {homedir} from 'node:os';
import path from 'node:path';
import type {Options} from 'conf';

const NAME = 'isolate-wizard';

/** conf's directory for `name` (env-paths' config directory; conf creates it on opening a store). */
function configDirectoryOf(name: string, env: NodeJS.ProcessEnv): string {
  if (process.platform === 'darwin') return path.join(homedir(), 'Library', 'Preferences', name);
  if (process.platform === 'win32') return path.join(env['APPDATA'] || path.join(homedir(), 'AppData', 'Roaming'), name, 'Config');
  return path.join(env['XDG_CONFIG_HOME'] || path.join(homedir(), '.config'), name);
}

/** The settings directory; the old `isolate-wizard-nodejs` one is renamed to it when only that exists. */
export function settingsDirectory(env: NodeJS.ProcessEnv = process.env): string {
  const current = configDirectoryOf(NAME, env);
  if (!existsSync(current)) {
    const old = configDirectoryOf(`${NAME}-nodejs`, env);
    if (existsSync(old)) renameSync(old, current);
  }
  return current;
}

/** conf options for one store; `directory` replaces the per-user directory (tests). */
export function storeOptions<T extends Record<string, unknown>>(configName: string, directory?: string): Partial<Options<T>> {
  return {configName, cwd: directory ?? settingsDirectory()};
}
