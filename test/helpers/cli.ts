/**
 * The built CLI in a child process, with only the environment a test gives it, like a user's
 * shell would run it.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';

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

/** `env` adds to a base of PATH, no HTTP server and dummy AWS credentials; `undefined` removes a variable. */
export function startCli(args: readonly string[], env: Record<string, string | undefined> = {}, input?: string): RunningCli {
  const merged: Record<string, string | undefined> = { PATH: process.env.PATH ?? '', ...BASE_ENV, ...env };
  const child = spawn(process.execPath, [CLI, ...args], {
    env: Object.fromEntries(Object.entries(merged).filter(([, value]) => value !== undefined)),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
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
