/**
 * The bench's harness: its options and scenario catalogue, the emulator in a process of its own,
 * fresh queues and databases, CPU bracketing of the servers, and the results file.
 */
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { cpus, platform, release, totalmem } from 'node:os';
import pg from 'pg';
import { type LocalPostgres } from '../src/embedded/postgres.js';
import { EMULATOR_CREDENTIALS } from '../src/embedded/sqs.js';
import { sendLines } from '../src/send.js';
import { distFile, jsonLine } from './child.js';
import type { EmulatorReply, EmulatorUsage } from './emulator-server.js';
import { postgresCpuSeconds } from './proc.js';

export interface BenchOptions {
  readonly messages: number;
  readonly concurrency: number;
  readonly naiveConcurrency: number;
  readonly seed: number;
  readonly only: readonly ScenarioName[];
  readonly followMinutes: number | undefined;
  /** `--instances 1,2,4`: instead of the scenarios, drain one queue with that many `run` processes at once. */
  readonly instances: readonly number[] | undefined;
  readonly followRate: number;
  /** `--lag-seconds S`: the event lag at half the measured drain rate, for S seconds. */
  readonly lagSeconds: number | undefined;
  readonly sampleSeconds: number;
  /** Measured runs of each start-up figure: `--help` and `node -e 0` this many times, `run --drain` half as many (at least one). */
  readonly startupRuns: number;
  readonly resultsDir: string;
  /** Run the measured consumers with --cpu-prof into this directory (their numbers then include the profiler). */
  readonly profileDir: string | undefined;
}

export const SCENARIOS = ['queue-stock', 'queue-pipeline', 'queue-sdk', 'copy', 'pipeline', 'pipeline-sdk', 'naive'] as const;

export type ScenarioName = (typeof SCENARIOS)[number];

export const LABELS: Record<ScenarioName, string> = {
  'queue-stock': '1a queue ceiling, stock SDK client',
  'queue-pipeline': "1b queue ceiling, pipeline's Queue, lean client",
  'queue-sdk': "1c queue ceiling, pipeline's Queue, tuned SDK client",
  copy: '2  database ceiling, COPY',
  pipeline: '3  pipeline, run --drain',
  'pipeline-sdk': '3b pipeline, run --drain --sqs-client sdk',
  naive: '4  naive consumer',
};

export interface ScenarioResult {
  readonly scenario: ScenarioName;
  readonly label: string;
  readonly messages: number;
  /** The measured window: from the first receive (or the COPY) to the last delete (or commit). */
  readonly elapsedMs: number;
  readonly msgsPerSecond: number;
  /** Consumer CPU over the measured window. */
  readonly cpuSeconds: number;
  readonly cpuSecondsPer10k: number;
  /** Peak RSS of the consumer process over its whole life. */
  readonly peakRssMb: number;
  readonly emulatorCpuSeconds: number | undefined;
  readonly emulatorCpuSecondsPer10k: number | undefined;
  readonly postgresCpuSeconds: number | undefined;
  readonly postgresCpuSecondsPer10k: number | undefined;
  /** Spawn to exit of the consumer process, start-up included. */
  readonly processWallMs: number;
  readonly processCpuSeconds: number | undefined;
  /**
   * CPU the rest of the machine used while this scenario ran (all processes minus the consumer,
   * the emulator and Postgres); high values mean another workload competed for the cores.
   */
  readonly otherCpuSeconds: number | undefined;
  readonly scenarioWallMs: number;
  readonly details: Record<string, unknown>;
}

/** The emulator's own process, and a way to read its CPU time. */
export interface Emulator {
  readonly endpoint: string;
  readonly pid: number;
  usage(): Promise<EmulatorUsage>;
  stop(): Promise<EmulatorUsage | undefined>;
}

export async function startEmulator(): Promise<Emulator> {
  const child: ChildProcess = fork(distFile('bench/emulator-server.js'), [], {
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    env: { PATH: process.env.PATH ?? '' },
  });
  let finalLine = '';
  child.stdout?.on('data', (chunk: Buffer) => (finalLine += chunk.toString()));
  const replies: ((reply: EmulatorReply) => void)[] = [];
  child.on('message', (reply: EmulatorReply) => replies.shift()?.(reply));
  const next = () => new Promise<EmulatorReply>((resolve) => replies.push(resolve));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const ready = await Promise.race([next(), exited.then(() => undefined)]);
  if (ready?.type !== 'ready' || child.pid === undefined) throw new Error('the emulator process did not start');
  return {
    endpoint: ready.endpoint,
    pid: child.pid,
    async usage() {
      const reply = next();
      child.send({ type: 'usage' });
      const usage = await reply;
      if (usage.type !== 'usage') throw new Error('unexpected reply from the emulator');
      return usage;
    },
    async stop() {
      child.kill('SIGTERM');
      await exited;
      return jsonLine<EmulatorUsage>(finalLine.trim().split('\n').at(-1) ?? '', 'cpuSeconds');
    },
  };
}

export interface Environment {
  readonly options: BenchOptions;
  readonly emulator: Emulator;
  readonly postgres: LocalPostgres;
  readonly sqs: SQSClient;
  readonly bodies: readonly string[];
  readonly valid: number;
}

export let names = 0;

export const uniqueName = (prefix: string) => `${prefix}_${process.pid}_${(names += 1)}`;

export async function freshQueue(env: Environment, bodies: readonly string[]): Promise<{ queueUrl: string; loadMs: number }> {
  const { QueueUrl } = await env.sqs.send(new CreateQueueCommand({ QueueName: uniqueName('bench') }));
  if (QueueUrl === undefined) throw new Error('CreateQueue returned no URL');
  const started = performance.now();
  const sent = await sendLines(env.sqs, QueueUrl, bodies);
  if (sent !== bodies.length) throw new Error(`loaded ${sent} of ${bodies.length} messages`);
  return { queueUrl: QueueUrl, loadMs: performance.now() - started };
}

export async function queueDepth(sqs: SQSClient, queueUrl: string): Promise<number> {
  const { Attributes: a } = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
    }),
  );
  return Number(a?.ApproximateNumberOfMessages ?? 0) + Number(a?.ApproximateNumberOfMessagesNotVisible ?? 0) + Number(a?.ApproximateNumberOfMessagesDelayed ?? 0);
}

export async function freshDatabase(postgres: LocalPostgres, withUserLogins: boolean): Promise<string> {
  const name = uniqueName('bench');
  const admin = new pg.Client({ connectionString: postgres.url });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = postgres.urlFor(name);
  if (withUserLogins) {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(`CREATE TABLE user_logins(
        user_id varchar(128), device_type varchar(32), masked_ip varchar(256),
        masked_device_id varchar(256), locale varchar(32), app_version integer, create_date date)`);
    } finally {
      await client.end();
    }
  }
  return url;
}

export async function count(url: string, sql: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: number }>(sql);
    return rows[0]?.n ?? 0;
  } finally {
    await client.end();
  }
}

/** Brackets a measured step with the emulator's and Postgres's CPU readings. */
export async function bracket<T>(env: Environment, step: () => Promise<T>): Promise<{ value: T; emulatorCpu: number; postgresCpu: number | undefined }> {
  const emulatorBefore = await env.emulator.usage();
  const postgresBefore = postgresCpuSeconds();
  const value = await step();
  const emulatorAfter = await env.emulator.usage();
  const postgresAfter = postgresCpuSeconds();
  return {
    value,
    emulatorCpu: emulatorAfter.cpuSeconds - emulatorBefore.cpuSeconds,
    postgresCpu: postgresBefore === undefined || postgresAfter === undefined ? undefined : postgresAfter - postgresBefore,
  };
}

export function result(
  scenario: ScenarioName,
  m: { messages: number; elapsedMs: number; cpuSeconds: number; peakRssMb: number; processWallMs: number; processCpuSeconds: number | undefined },
  emulatorCpu: number | undefined,
  postgresCpu: number | undefined,
  details: Record<string, unknown>,
): ScenarioResult {
  const per10k = (seconds: number | undefined) => (seconds === undefined ? undefined : (seconds / m.messages) * 10_000);
  return {
    scenario,
    label: LABELS[scenario],
    messages: m.messages,
    elapsedMs: Math.round(m.elapsedMs),
    msgsPerSecond: m.messages / (m.elapsedMs / 1000),
    cpuSeconds: m.cpuSeconds,
    cpuSecondsPer10k: per10k(m.cpuSeconds) ?? 0,
    peakRssMb: m.peakRssMb,
    emulatorCpuSeconds: emulatorCpu,
    emulatorCpuSecondsPer10k: per10k(emulatorCpu),
    postgresCpuSeconds: postgresCpu,
    postgresCpuSecondsPer10k: per10k(postgresCpu),
    processWallMs: Math.round(m.processWallMs),
    processCpuSeconds: m.processCpuSeconds,
    otherCpuSeconds: undefined,
    scenarioWallMs: 0,
    details,
  };
}

/** With --profile-dir, each measured consumer writes a .cpuprofile there (and its numbers include the profiler). */
export function profileArgs(env: Environment): string[] {
  return env.options.profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${env.options.profileDir}`];
}

export interface PipelineLog {
  readonly msg?: string;
  /** ISO time: the logger uses pino's isoTime. */
  readonly time?: string;
  readonly messages?: number;
}

/** Env and flags of `login-etl run` against the bench's emulator and a database. */
export function pipelineEnv(env: Environment, queueUrl: string, databaseUrl: string): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: EMULATOR_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: EMULATOR_CREDENTIALS.secretAccessKey,
    AWS_ENDPOINT_URL_SQS: env.emulator.endpoint,
    SQS_QUEUE_URL: queueUrl,
    DATABASE_URL: databaseUrl,
    PII_KEY: randomBytes(32).toString('base64'),
    LOGIN_ETL_HTTP_PORT: '0',
  };
}

/**
 * `run` with C receive loops and C connections, on the chosen SQS client. Each receive reserves its
 * worst case (10 messages of 1 MiB) under --max-in-flight-bytes, so the bound is sized for C
 * receives at once (at least the default 64 MiB); with the default, more than 6 loops would wait
 * for each other.
 */
export function pipelineArgs(env: Environment, drain: boolean, sqsClient: 'lean' | 'sdk' = 'lean'): string[] {
  const c = env.options.concurrency;
  const bytes = Math.max(64, c * 10) * 1_048_576;
  return ['run', ...(drain ? ['--drain'] : []), '--receive-concurrency', String(c), '--pg-pool-max', String(c), '--max-in-flight-bytes', String(bytes), '--sqs-client', sqsClient];
}

export function machine(): Record<string, unknown> {
  const list = cpus();
  return {
    cpuModel: list[0]?.model ?? 'unknown',
    cpuCount: list.length,
    totalMemoryMb: Math.round(totalmem() / 1024 / 1024),
    node: process.version,
    os: `${platform()} ${release()}`,
  };
}

export async function writeResults(dir: string, data: Record<string, unknown>): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = `${dir}/${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
  await writeFile(file, `${JSON.stringify(data, null, 2)}\n`);
  return file;
}

/** A TCP port free right now, for the consumer's /metrics. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address !== 'object') throw new Error('no free port');
  return address.port;
}
