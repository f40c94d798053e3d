/**
 * Start-up, as a person feels it: wall time from exec to exit of `login-etl --help`, and of
 * `login-etl run --drain` on the 100-message sample against servers already running (a fresh
 * queue and database each time, so migrations are part of it). Each is run once unmeasured
 * first, which also fills Node's compile cache, as any earlier use of the command would.
 */
import { spawn } from 'node:child_process';
import { CreateQueueCommand, type SQSClient } from '@aws-sdk/client-sqs';
import pg from 'pg';
import { generateSampleEvents } from '../src/embedded/sample-data.js';
import type { LocalPostgres } from '../src/embedded/postgres.js';
import { sendLines } from '../src/send.js';
import { generateKeyText } from '../src/transform/key.js';
import { distFile } from './child.js';

/** Issue 12's targets, in milliseconds of wall time. */
export const STARTUP_TARGETS_MS = { help: 150, drain100: 600 } as const;

export interface StartupFigures {
  /** `node -e 0`: the floor any command starts from, measured in the same run, for ratios. */
  readonly nodeMs: { readonly median: number; readonly min: number; readonly runs: number };
  readonly helpMs: { readonly median: number; readonly min: number; readonly runs: number };
  readonly drain100Ms: { readonly median: number; readonly min: number; readonly runs: number };
}

export interface StartupServers {
  readonly sqs: SQSClient;
  readonly sqsEndpoint: string;
  readonly postgres: LocalPostgres;
}

/** Wall milliseconds from spawn to exit; a non-zero exit is an error. */
function timed(args: readonly string[], env: Record<string, string>, script: readonly string[] = [distFile('src/cli.js')]): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [...script, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const ms = performance.now() - started;
      if (code === 0) resolve(ms);
      else reject(new Error(`login-etl ${args.join(' ')} exited with ${code}: ${stderr.slice(-2_000)}`));
    });
  });
}

function summary(samples: readonly number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  return { median: Math.round(sorted[Math.floor(sorted.length / 2)] ?? 0), min: Math.round(sorted[0] ?? 0), runs: sorted.length };
}

let names = 0;

export async function measureStartup(servers: StartupServers, runs = { help: 11, drain: 5 }): Promise<StartupFigures> {
  const node: number[] = [];
  for (let i = 0; i < runs.help; i += 1) node.push(await timed([], {}, ['-e', '0']));
  const help: number[] = [];
  await timed(['--help'], {});
  for (let i = 0; i < runs.help; i += 1) help.push(await timed(['--help'], {}));

  const bodies = generateSampleEvents({ count: 100, seed: 1 }).map((e) => e.body);
  const key = generateKeyText();
  const drain: number[] = [];
  for (let i = 0; i <= runs.drain; i += 1) {
    const name = `startup_${process.pid}_${(names += 1)}`;
    const { QueueUrl } = await servers.sqs.send(new CreateQueueCommand({ QueueName: name }));
    if (QueueUrl === undefined) throw new Error('CreateQueue returned no URL');
    await sendLines(servers.sqs, QueueUrl, bodies);
    const admin = new pg.Client({ connectionString: servers.postgres.url });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const ms = await timed(['run', '--drain', '--wait-time-seconds', '1', '--http-port', '0'], {
      SQS_QUEUE_URL: QueueUrl,
      AWS_ENDPOINT_URL_SQS: servers.sqsEndpoint,
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      DATABASE_URL: servers.postgres.urlFor(name),
      PII_KEY: key,
      LOG_LEVEL: 'warn',
    });
    // The first run is the unmeasured one.
    if (i > 0) drain.push(ms);
  }
  return { nodeMs: summary(node), helpMs: summary(help), drain100Ms: summary(drain) };
}

export function startupTable(figures: StartupFigures): string {
  const rows = [
    ['node -e 0 (baseline)', figures.nodeMs, undefined],
    ['login-etl --help', figures.helpMs, STARTUP_TARGETS_MS.help],
    ['run --drain, 100 messages', figures.drain100Ms, STARTUP_TARGETS_MS.drain100],
  ] as const;
  const lines = ['start-up (exec to exit)      median ms  min ms  × baseline  runs  target ms  met'];
  for (const [label, f, target] of rows) {
    const ratio = (f.median / Math.max(1, figures.nodeMs.median)).toFixed(1);
    const met = target === undefined ? '' : f.median <= target ? 'yes' : 'NO';
    lines.push(
      `${label.padEnd(28)} ${String(f.median).padStart(9)}  ${String(f.min).padStart(6)}  ${ratio.padStart(10)}  ${String(f.runs).padStart(4)}  ${String(target ?? '').padStart(9)}  ${met}`,
    );
  }
  return lines.join('\n');
}
