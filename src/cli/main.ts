/**
 * The command line: turns argv into a command, and failures into exit codes (0 done, 1 failure
 * at run time, 2 something the user must change first). No pipeline logic lives here, and
 * nothing runs on import: the bin (src/cli.ts) calls `runCli`.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { COMMANDS } from '../commands/index.js';
import { UsageError } from '../errors.js';
import { printable } from '../observability/printable.js';
import { SETTINGS } from '../settings.js';
import type { Command, CommandIo } from './command.js';
import { failureLine } from './failure.js';
import { help } from './help.js';

/** The options parseArgs accepts for a command: its settings, its own options and --help. */
export function optionsOf(command: Command): NonNullable<ParseArgsConfig['options']> {
  const options: NonNullable<ParseArgsConfig['options']> = { help: { type: 'boolean', short: 'h' } };
  for (const name of command.settings) options[SETTINGS[name].flag] = { type: SETTINGS[name].type };
  for (const [flag, spec] of Object.entries(command.extra ?? {})) {
    options[flag] = spec.default === undefined ? { type: spec.type } : { type: spec.type, default: spec.default };
  }
  return options;
}

/**
 * Runs one command with the streams of `io` and resolves with its exit code; failures are printed
 * as one line on its stderr. Nothing here touches the process: `runCli` below does that.
 */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv, stop: AbortSignal, io: CommandIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    io.stdout.write(`${help(COMMANDS, rest[0])}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  try {
    if (command === undefined) throw new UsageError(`unknown command '${name}'; see login-etl --help`);
    let flags: Record<string, string | boolean | undefined>;
    let positionals: string[];
    try {
      const parsed = parseArgs({ args: [...rest], options: optionsOf(command), strict: true, allowPositionals: command.positionals === true });
      flags = parsed.values as typeof flags;
      positionals = parsed.positionals;
    } catch (err) {
      throw new UsageError(`${argumentProblem(err)}; see login-etl ${name} --help`);
    }
    if (flags.help === true) {
      io.stdout.write(`${help(COMMANDS, name)}\n`);
      return 0;
    }
    return await command.action({ flags, positionals, env, stop, io });
  } catch (err) {
    const { text, exitCode } = failureLine(err);
    // Postgres's messages can quote stored text (and the user's own SQL): escaped like any output.
    io.stderr.write(`login-etl: ${printable(text)}\n`);
    return exitCode;
  }
}

/** Node's texts for bad arguments suggest `--` for positionals, which misleads here. */
function argumentProblem(err: unknown): string {
  const code = (err as { code?: string }).code;
  const message = err instanceof Error ? err.message : String(err);
  const option = /'([^']*)'/.exec(message)?.[1];
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option !== undefined) return `unknown option '${option}'`;
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && option !== undefined) {
    const flag = option.split(' ')[0] ?? option;
    return /argument missing/.test(message) ? `option '${flag}' needs a value` : `option '${flag}' takes no value`;
  }
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') return `unexpected argument '${option ?? ''}': this command takes options only`;
  return message;
}

/**
 * The first SIGINT or SIGTERM aborts `stop`, and the command finishes what it holds; a second
 * exits at once (uncommitted messages stay in the queue and the ledger skips committed ones).
 */
function installSignalHandlers(controller: AbortController, stopping: string): void {
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals === 1) {
      process.stderr.write(`login-etl: ${signal} received; ${stopping}\n`);
      controller.abort();
    } else {
      process.stderr.write(`login-etl: ${signal} received again; exiting now\n`);
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/** The process: signals, the command, and its exit code. */
export async function runCli(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<void> {
  const controller = new AbortController();
  installSignalHandlers(controller, COMMANDS[argv[0] ?? '']?.stopping ?? 'stopping (send it again to force)');
  try {
    process.exitCode = await main(argv, env, controller.signal, { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin });
  } catch (err) {
    process.stderr.write(`login-etl: ${printable(failureLine(err).text)}\n`);
    process.exit(1);
  }
}
