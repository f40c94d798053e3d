/**
 * The command line as tests run it: the built CLI in a child process, with only the environment
 * a test gives it, like a user's shell would run it (`cli`, `startCli`); or a command run in this
 * process with the same environment and its streams captured (`cliInProcess`), where only what it
 * prints and its exit code are checked.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { main } from '../../src/cli/main.js';

export const CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url));

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunningCli {
  readonly child: ChildProcessWithoutNullStreams;
  /** Output so far. */
  stdout(): string;
  stderr(): string;
  readonly exited: Promise<CliResult>;
  /** Resolves once stdout has a JSON log line with this `msg`; rejects if the process exits first. */
  waitForLog(msg: string, timeoutMs?: number): Promise<Record<string, unknown>>;
}

const BASE_ENV = {
  LOGIN_ETL_HTTP_PORT: '0',
  AWS_ACCESS_KEY_ID: 'test',
  AWS_SECRET_ACCESS_KEY: 'test',
};

/** The environment of a command: `env` added to a base of PATH, no HTTP server and dummy AWS credentials; `undefined` removes a variable. */
function commandEnv(env: Record<string, string | undefined>): Record<string, string> {
  const merged: Record<string, string | undefined> = { PATH: process.env.PATH ?? '', ...BASE_ENV, ...env };
  return Object.fromEntries(Object.entries(merged).filter((entry): entry is [string, string] => entry[1] !== undefined));
}

/** The CLI in a child process, with the environment of `commandEnv(env)` and `input` on its stdin. */
export function startCli(args: readonly string[], env: Record<string, string | undefined> = {}, input?: string): RunningCli {
  const child = spawn(process.execPath, [CLI, ...args], { env: commandEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const listeners = new Set<() => void>();
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    for (const listener of listeners) listener();
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.end(input ?? '');
  const exited = new Promise<CliResult>((resolve) =>
    child.on('close', (code, signal) => {
      for (const listener of listeners) listener();
      resolve({ code, signal, stdout, stderr });
    }),
  );
  const findLog = (msg: string) =>
    logLines(stdout).find((line) => line.msg === msg);
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    waitForLog(msg, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => finish(new Error(`no '${msg}' log line within ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs);
        const check = () => {
          const found = findLog(msg);
          if (found) finish(undefined, found);
          else if (child.exitCode !== null || child.signalCode !== null) finish(new Error(`exited before logging '${msg}'; stderr: ${stderr}`));
        };
        const finish = (err?: Error, line?: Record<string, unknown>) => {
          clearTimeout(timer);
          listeners.delete(check);
          if (err) reject(err);
          else resolve(line ?? {});
        };
        listeners.add(check);
        check();
      });
    },
  };
}

export async function cli(args: readonly string[], env: Record<string, string | undefined> = {}, input?: string): Promise<CliResult> {
  return await startCli(args, env, input).exited;
}

/**
 * A command run in this process, as `cli` would run it in a child: `main` with the same
 * environment (a copy; this process's own is not read for settings), a stop signal that never
 * fires, `input` on a stdin that is not a terminal, and stdout and stderr captured as text. It
 * resolves with what `cli` resolves with, without the ~0.3 s of CPU a child spends loading
 * Node.js and the modules.
 *
 * Use it where a test checks only what a command prints and its exit code: report, unmask,
 * rekey, migrate, keygen, generate, rejected list, show and export, --help, and commands that
 * must fail with exit 2 on a bad setting before they use the network. Use `cli` or `startCli`
 * (a child process) for signals, terminals, exits through process.exit, `run` running a
 * pipeline, `demo`, and anything that talks to SQS (send, check, queue, rejected replay): the
 * AWS SDK's region and credential chains read `process.env`, not the command's environment, and
 * so would see this process's. Likewise node-postgres fills what a connection string leaves out
 * (user, password) from `process.env`: give in-process commands complete connection strings.
 */
export async function cliInProcess(args: readonly string[], env: Record<string, string | undefined> = {}, input?: string): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, commandEnv(env), new AbortController().signal, {
    stdout: {
      write(text: string) {
        stdout += text;
      },
    },
    stderr: {
      write(text: string) {
        stderr += text;
      },
    },
    stdin: Readable.from(Buffer.from(input ?? '')),
  });
  return { code, signal: null, stdout, stderr };
}

/** The JSON log lines of an output, ignoring anything else. */
export function logLines(output: string): Record<string, unknown>[] {
  return output.split('\n').flatMap((line) => {
    if (!line.startsWith('{')) return [];
    try {
      return [JSON.parse(line) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}

/** The final summary a `run` logs when it stops. */
export function summaryOf(output: string): Record<string, number> {
  const line = logLines(output).findLast((l) => l.msg === 'pipeline stopped');
  if (line === undefined) throw new Error(`no summary in output:\n${output.slice(-2000)}`);
  return line as Record<string, number>;
}
