import type {Command} from './command.js';
import {applyCommand} from './apply.js';
import {confirmCommand} from './confirm.js';
import {discoverCommand} from './discover.js';
import {exportCommand} from './export.js';
import {planCommand} from './plan.js';
import {rollbackCommand} from './rollback.js';
import {statusCommand} from './status.js';

export const COMMANDS: readonly Command[] = [
  planCommand,
  discoverCommand,
  applyCommand,
  confirmCommand,
  rollbackCommand,
  statusCommand,
  exportCommand,
];
