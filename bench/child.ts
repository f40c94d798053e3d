/**
 * Runs one measured child process: `node --import usage-reporter.js <script> ...`, its stdout
 * handed over line by line, its own CPU time and peak RSS read from the line the reporter
 * writes when it exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseUsage, type ChildUsage } from './proc.js';

const REPORTER = pathToFileURL(fileURLToPath(new URL('./usage-reporter.js', import.meta.url))).href;

/** A compiled file of dist/bench or dist/src, by its path relative to dist/. */
export function distFile(relative: string): string {
  return fileURLToPath(new URL(`../${relative}`, import.meta.url));
}

export interface ChildResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly usage: ChildUsage | undefined;
  readonly wallMs: number;
  /** The last 16 KiB of stderr, for error messages. */
  readonly stderrTail: string;
}

export interface RunningChild {
  readonly child: ChildProcess;
  readonly exited: Promise<ChildResult>;
}

export function startChild(
  script: string,
  args: readonly string[],
  options: { env?: Record<string, string>; nodeArgs?: readonly string[]; onLine?: (line: string) => void } = {},
): RunningChild {
  const started = performance.now();
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), '--import', REPORTER, script, ...args], {
    env: { PATH: process.env.PATH ?? '', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-16_384);
  });
  const lines = child.stdout === null ? undefined : createInterface({ input: child.stdout, crlfDelay: Infinity });
  lines?.on('line', (line) => options.onLine?.(line));
  const exited = new Promise<ChildResult>((resolve) => {
    child.on('close', (code, signal) =>
      resolve({ code, signal, usage: parseUsage(stderr), wallMs: performance.now() - started, stderrTail: stderr }),
    );
  });
  return { child, exited };
}

/** Runs a child to its end; fails unless it exits 0. */
export async function runChild(
  script: string,
  args: readonly string[],
  options: { env?: Record<string, string>; nodeArgs?: readonly string[]; onLine?: (line: string) => void } = {},
): Promise<ChildResult> {
  const result = await startChild(script, args, options).exited;
  if (result.code !== 0) {
    throw new Error(`${script} exited with ${result.code ?? result.signal}; stderr:\n${result.stderrTail.slice(-4_000)}`);
  }
  return result;
}

/** The last line of stdout that is a JSON object with this key. */
export function jsonLine<T>(line: string, key: string): T | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const value = JSON.parse(line) as Record<string, unknown>;
    return key in value ? (value as T) : undefined;
  } catch {
    return undefined;
  }
}
