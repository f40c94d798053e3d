/**
 * Every command, by name, in the order --help lists them. Each module declares its settings and
 * options and loads what its action uses only when it runs, so importing this costs little.
 */
import type { Command } from '../cli/command.js';
import { check } from './check.js';
import { demo } from './demo.js';
import { generate } from './generate.js';
import { keygen } from './keygen.js';
import { migrate } from './migrate.js';
import { queue } from './queue.js';
import { rejected } from './rejected.js';
import { rekey } from './rekey.js';
import { report } from './report.js';
import { run } from './run.js';
import { send } from './send.js';
import { unmask } from './unmask.js';

export const COMMANDS: Readonly<Record<string, Command>> = { demo, run, check, report, send, queue, migrate, keygen, unmask, rejected, rekey, generate };
