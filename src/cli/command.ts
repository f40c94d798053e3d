/**
 * What a command declares (its settings, its own options, its action) and the small helpers
 * the command modules share. Nothing heavy is imported here: help and argument parsing load
 * no dependency, and each action imports what it uses when it runs.
 */
import { open, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { ConfigError } from '../errors.js';
import type { LogDestination } from '../observability/logger.js';
import type { SettingName } from '../settings.js';

/** An option of one command only, not in the settings table. */
export interface ExtraOption {
  readonly type: 'string' | 'boolean';
  readonly default?: string;
  readonly description: string;
}

/** What a command's --help says about a setting, where the shared description does not fit it. */
export interface SettingHelp {
  readonly description: string;
  /** Shown as the default; none is shown when absent. */
  readonly default?: string;
}

/** Where a command writes: the process's stdout or stderr, or anything else that takes text. */
export interface CommandOutput {
  write(text: string): unknown;
  /** A terminal: `run --drain` draws its progress line there, and logs are formatted for people. */
  readonly isTTY?: boolean;
  /** A terminal's width, which the progress line fits into. */
  readonly columns?: number;
  /** Set on the process's own streams (1, 2): loggers write to it synchronously, as to a file. */
  readonly fd?: number;
}

/**
 * A command's standard streams. The executable passes the process's own (src/cli/main.ts
 * `runCli`); tests pass their own, to run a command in-process and read what it printed.
 */
export interface CommandIo {
  readonly stdout: CommandOutput;
  readonly stderr: CommandOutput;
  readonly stdin: Readable & { readonly isTTY?: boolean };
}

export interface CommandContext {
  readonly flags: Record<string, string | boolean | undefined>;
  readonly positionals: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  readonly stop: AbortSignal;
  readonly io: CommandIo;
}

export interface Command {
  readonly summary: string;
  /** The operands after `login-etl NAME` in the usage line, such as `[options] VALUE...`. */
  readonly usage?: string;
  readonly settings: readonly SettingName[];
  /** Replaces the shared description and default of a setting in this command's --help. */
  readonly settingHelp?: Partial<Record<SettingName, SettingHelp>>;
  readonly extra?: Record<string, ExtraOption>;
  /** Takes operands after the options. */
  readonly positionals?: boolean;
  /** What the first SIGINT or SIGTERM makes the command do, as said on stderr. */
  readonly stopping?: string;
  readonly action: (context: CommandContext) => Promise<number>;
}

/** What a command prints: `out` a line on stdout, `err` a line on stderr after `login-etl: `. */
export interface Lines {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

export function lines(io: CommandIo): Lines {
  return {
    out: (line) => {
      io.stdout.write(`${line}\n`);
    },
    err: (line) => {
      io.stderr.write(`login-etl: ${line}\n`);
    },
  };
}

/**
 * Where a command's logger writes, given the output it logs to: the process's stdout or stderr
 * by file descriptor (written synchronously, and formatted for people when it is a terminal),
 * any other output through its `write`.
 */
export function logDestination(output: CommandOutput): LogDestination {
  return output.fd === 1 || output.fd === 2 ? output.fd : output;
}

export function wholeNumber(flag: string, value: string | boolean | undefined, min: number, max: number): number {
  const n = Number(value);
  if (typeof value !== 'string' || !/^\d+$/.test(value) || n < min || n > max) {
    throw new ConfigError(`--${flag}`, `must be a whole number from ${min} to ${max}`);
  }
  return n;
}

export function timeFlag(flag: string, value: string): Date {
  const time = /^\d{4}-\d{2}-\d{2}/.test(value) ? new Date(value) : new Date(Number.NaN);
  if (Number.isNaN(time.getTime())) throw new ConfigError(`--${flag}`, 'must be an ISO 8601 date or time, such as 2026-11-29 or 2026-11-29T10:00:00Z');
  return time;
}

/** A new file only its owner can read; an existing one is never overwritten. */
export async function createPrivateFile(path: string, flag = '--out'): Promise<FileHandle> {
  try {
    return await open(path, 'wx', 0o600);
  } catch (e: unknown) {
    const code = (e as { code?: string }).code ?? 'error';
    throw new ConfigError(flag, code === 'EEXIST' ? `${path} exists already; it is never overwritten` : `cannot create ${path} (${code})`);
  }
}
