/**
 * The command line as tests run it: the built CLI in a child process, with only the environment
 * a test gives it, like a user's shell would run it (`cli`, `startCli`); or a command run in this
 * process with the same environment and its streams captured (`cliInProcess`), where the process
 * itself is not what is checked.
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
  // On a cloud machine the instance metadata service would answer the SDK's region and
  // credential chains with the machine's own; elsewhere a request to it can wait for a timeout.
  AWS_EC2_METADATA_DISABLED: 'true',
};

/**
 * The environment of a command: `env` added to a base of PATH, no HTTP server, dummy AWS
 * credentials and no instance metadata; `undefined` removes a variable.
 */
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
 * resolves with what `cli` resolves with, without the 0.3 to 0.5 s of CPU a child spends loading
 * Node.js and the modules.
 *
 * The AWS SDK's credential and region chains read `process.env`, not the command's environment,
 * so while a command runs here this process's AWS_ variables are the command's and no others
 * (`withAwsEnvironment`): the base's dummy credentials, and no instance metadata, as a child gets
 * them. A `run --drain` here therefore signs as the child does, looks up no region or credentials
 * in instance metadata, and logs the same JSON lines to the captured stdout (cli.test.ts compares
 * them with a child's); it ends by itself, as the drain does in a child that `cli` never signals.
 * The credentials are not passed through runPipeline's `credentials` option: `main` cannot reach
 * it, and a way in for tests would make the command differ from what users run.
 *
 * Use it where a test checks what a command prints, its exit code and what it did to the
 * database and the queues: report, unmask, rekey, migrate, keygen, generate, send, check, queue
 * create, rejected list, show, export and replay, --help, bad settings, and `run --drain`. Use
 * `cli` or `startCli` (a child process) for signals, terminals, exits through process.exit, a
 * `run` that a signal stops, `demo`, what a process loads, and where everything the process
 * writes is checked: Node.js and the SDK write warnings to the process's own stderr, which is not
 * captured here, and so does a command without credentials that signs for a local endpoint with
 * dummy ones (its notice). Likewise a command here finds ~/.aws under this process's HOME, and
 * node-postgres fills what a connection string leaves out (user, password) from `process.env`:
 * give in-process commands complete connection strings.
 */
export async function cliInProcess(args: readonly string[], env: Record<string, string | undefined> = {}, input?: string): Promise<CliResult> {
  const commandEnvironment = commandEnv(env);
  let stdout = '';
  let stderr = '';
  const code = await withAwsEnvironment(commandEnvironment, () =>
    main(args, commandEnvironment, new AbortController().signal, {
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
    }),
  );
  return { code, signal: null, stdout, stderr };
}

/** The AWS_ variables this process held before the commands running in it, and how many run. */
let heldAws: { readonly variables: string; readonly saved: [string, string][]; running: number } | undefined;

const awsVariables = (env: NodeJS.ProcessEnv): [string, string][] =>
  Object.entries(env)
    .filter((entry): entry is [string, string] => entry[0].startsWith('AWS_') && entry[1] !== undefined)
    .sort(([a], [b]) => a.localeCompare(b));

function replaceAwsVariables(variables: readonly [string, string][]): void {
  for (const [name] of awsVariables(process.env)) delete process.env[name];
  for (const [name, value] of variables) process.env[name] = value;
}

/**
 * Runs `body` with this process's AWS_ variables replaced by those of `env`, and puts the
 * process's own back once no command runs in-process. Commands in-process at once must have the
 * same AWS_ variables: the SDK would read whichever were set last.
 */
async function withAwsEnvironment<T>(env: Record<string, string>, body: () => Promise<T>): Promise<T> {
  const wanted = awsVariables(env);
  const variables = JSON.stringify(wanted);
  if (heldAws === undefined) {
    heldAws = { variables, saved: awsVariables(process.env), running: 0 };
    replaceAwsVariables(wanted);
  } else if (heldAws.variables !== variables) {
    throw new Error('commands run in-process at once need the same AWS_ variables: the AWS SDK reads them from process.env');
  }
  const held = heldAws;
  held.running += 1;
  try {
    return await body();
  } finally {
    held.running -= 1;
    if (held.running === 0) {
      replaceAwsVariables(held.saved);
      heldAws = undefined;
    }
  }
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
