#!/usr/bin/env node
// Compiled by `npm install` (the package's prepare script) into dist/.
import {main} from '../dist/cli.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    // Last resort: never a stack trace for the operator.
    process.stderr.write(`isolate-wizard: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
