/**
 * `npm run bench`: the pipeline measured against its own ceilings, in one run on one machine.
 *
 * Starts the SQS emulator in a process of its own and an embedded Postgres, then, each from a
 * freshly loaded queue (loading is not measured), runs as separate child processes:
 *   queue-stock     ReceiveMessage(10) + DeleteMessageBatch only, stock SDK client at its defaults
 *   queue-pipeline  the same through the pipeline's own Queue on the lean client (createPipelineQueue)
 *   queue-sdk       the same through the pipeline's Queue on the SDK client tuned for it (--sqs-client sdk)
 *   copy            COPY of the same events, already masked, into user_logins
 *   pipeline        `login-etl run --drain`, ledger and all checks on
 *   pipeline-sdk    the same with `--sqs-client sdk`
 *   naive           one INSERT per message, plain SHA-256, stock client (naive-consumer.ts)
 * and prints msgs/s, CPU per 10k messages, peak RSS and the emulator's CPU for each, the ratios
 * the targets are about, and writes everything to bench/results/<timestamp>.json.
 *
 * `--follow-minutes M` instead runs `login-etl run` against a steady producer for M minutes and
 * reports whether the consumer's memory stays flat.
 *
 * `--lag-seconds S` measures the pipeline's drain rate (scenario 3), then runs the same producer
 * for S seconds at half that rate and reports the p50 and p99 of the event lag (SentTimestamp to
 * commit) from the consumer's own histogram, login_etl_event_lag_seconds.
 */
import { CreateQueueCommand, DeleteQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { cpus, loadavg, platform, release, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startLocalPostgres, type LocalPostgres } from '../src/embedded/postgres.js';
import { generateSampleEvents } from '../src/embedded/sample-data.js';
import { EMULATOR_CREDENTIALS } from '../src/embedded/sqs.js';
import { sendLines } from '../src/send.js';
import { formatTable } from '../src/observability/table.js';
import { measureStartup, startupTable } from './startup.js';
import { histogramBuckets, histogramQuantile } from './lag.js';
import { distFile, jsonLine, runChild, startChild } from './child.js';
import type { CopyReport } from './copy-ceiling.js';
import type { EmulatorReply, EmulatorUsage } from './emulator-server.js';
import type { NaiveReport } from './naive-consumer.js';
import { machineBusyCpuSeconds, postgresCpuSeconds, processCpuSeconds, statusMb } from './proc.js';
import type { CeilingReport } from './queue-ceiling.js';

interface BenchOptions {
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
  readonly resultsDir: string;
  /** Run the measured consumers with --cpu-prof into this directory (their numbers then include the profiler). */
  readonly profileDir: string | undefined;
}

const SCENARIOS = ['queue-stock', 'queue-pipeline', 'queue-sdk', 'copy', 'pipeline', 'pipeline-sdk', 'naive'] as const;
type ScenarioName = (typeof SCENARIOS)[number];

const LABELS: Record<ScenarioName, string> = {
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

function parseOptions(argv: readonly string[]): BenchOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      messages: { type: 'string', default: '50000' },
      concurrency: { type: 'string', default: '16' },
      'naive-concurrency': { type: 'string', default: '1' },
      seed: { type: 'string', default: '1' },
      only: { type: 'string' },
      'follow-minutes': { type: 'string' },
      instances: { type: 'string' },
      'follow-rate': { type: 'string', default: '200' },
      'lag-seconds': { type: 'string' },
      'sample-seconds': { type: 'string', default: '5' },
      'results-dir': { type: 'string', default: distFile('../bench/results') },
      'profile-dir': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'npm run bench -- [--messages 50000] [--concurrency 16] [--naive-concurrency 1] [--seed 1]\n' +
        `               [--only ${SCENARIOS.join(',')}] [--results-dir DIR] [--profile-dir DIR]\n` +
        'npm run bench -- --follow-minutes M [--follow-rate 200] [--sample-seconds 5]\n' +
        'npm run bench -- --instances 1,2,4 [--messages 50000] [--concurrency 16]\n' +
        'npm run bench -- --lag-seconds S [--messages 50000] [--concurrency 16]\n',
    );
    process.exit(0);
  }
  const whole = (name: string, value: string | undefined, min: number) => {
    const n = Number(value);
    if (value === undefined || !Number.isInteger(n) || n < min) throw new Error(`--${name} must be a whole number >= ${min}`);
    return n;
  };
  const only = (values.only?.split(',') ?? [...SCENARIOS]).map((name) => {
    if (!(SCENARIOS as readonly string[]).includes(name)) throw new Error(`--only: unknown scenario ${name}`);
    return name as ScenarioName;
  });
  const followMinutes = values['follow-minutes'] === undefined ? undefined : Number(values['follow-minutes']);
  if (followMinutes !== undefined && !(followMinutes > 0)) throw new Error('--follow-minutes must be a positive number');
  const instances = values.instances?.split(',').map((n) => whole('instances', n, 1));
  return {
    messages: whole('messages', values.messages, 1),
    concurrency: whole('concurrency', values.concurrency, 1),
    naiveConcurrency: whole('naive-concurrency', values['naive-concurrency'], 1),
    seed: whole('seed', values.seed, 0),
    only,
    followMinutes,
    instances,
    followRate: whole('follow-rate', values['follow-rate'], 1),
    lagSeconds: values['lag-seconds'] === undefined ? undefined : whole('lag-seconds', values['lag-seconds'], 1),
    sampleSeconds: whole('sample-seconds', values['sample-seconds'], 1),
    resultsDir: values['results-dir'] ?? 'bench/results',
    profileDir: values['profile-dir'],
  };
}

/** The emulator's own process, and a way to read its CPU time. */
interface Emulator {
  readonly endpoint: string;
  readonly pid: number;
  usage(): Promise<EmulatorUsage>;
  stop(): Promise<EmulatorUsage | undefined>;
}

async function startEmulator(): Promise<Emulator> {
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

interface Environment {
  readonly options: BenchOptions;
  readonly emulator: Emulator;
  readonly postgres: LocalPostgres;
  readonly sqs: SQSClient;
  readonly bodies: readonly string[];
  readonly valid: number;
}

let names = 0;
const uniqueName = (prefix: string) => `${prefix}_${process.pid}_${(names += 1)}`;

async function freshQueue(env: Environment, bodies: readonly string[]): Promise<{ queueUrl: string; loadMs: number }> {
  const { QueueUrl } = await env.sqs.send(new CreateQueueCommand({ QueueName: uniqueName('bench') }));
  if (QueueUrl === undefined) throw new Error('CreateQueue returned no URL');
  const started = performance.now();
  const sent = await sendLines(env.sqs, QueueUrl, bodies);
  if (sent !== bodies.length) throw new Error(`loaded ${sent} of ${bodies.length} messages`);
  return { queueUrl: QueueUrl, loadMs: performance.now() - started };
}

async function queueDepth(sqs: SQSClient, queueUrl: string): Promise<number> {
  const { Attributes: a } = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
    }),
  );
  return Number(a?.ApproximateNumberOfMessages ?? 0) + Number(a?.ApproximateNumberOfMessagesNotVisible ?? 0) + Number(a?.ApproximateNumberOfMessagesDelayed ?? 0);
}

async function freshDatabase(postgres: LocalPostgres, withUserLogins: boolean): Promise<string> {
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

async function count(url: string, sql: string): Promise<number> {
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
async function bracket<T>(env: Environment, step: () => Promise<T>): Promise<{ value: T; emulatorCpu: number; postgresCpu: number | undefined }> {
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

function result(
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
function profileArgs(env: Environment): string[] {
  return env.options.profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${env.options.profileDir}`];
}

async function queueCeiling(env: Environment, client: 'stock' | 'pipeline' | 'sdk'): Promise<ScenarioResult> {
  const { queueUrl, loadMs } = await freshQueue(env, env.bodies);
  let report: CeilingReport | undefined;
  const { value: child, emulatorCpu } = await bracket(env, () =>
    runChild(
      distFile('bench/queue-ceiling.js'),
      ['--client', client, '--endpoint', env.emulator.endpoint, '--queue-url', queueUrl, '--messages', String(env.bodies.length), '--concurrency', String(env.options.concurrency)],
      { nodeArgs: profileArgs(env), onLine: (line) => (report = jsonLine<CeilingReport>(line, 'ceiling') ?? report) },
    ),
  );
  if (report === undefined || child.usage === undefined) throw new Error(`queue ceiling (${client}) reported nothing`);
  const left = await queueDepth(env.sqs, queueUrl);
  await env.sqs.send(new DeleteQueueCommand({ QueueUrl: queueUrl }));
  return result(
    client === 'stock' ? 'queue-stock' : client === 'sdk' ? 'queue-sdk' : 'queue-pipeline',
    { ...report, peakRssMb: child.usage.maxRssMb, processWallMs: child.wallMs, processCpuSeconds: child.usage.cpuSeconds },
    emulatorCpu,
    undefined,
    { loadMs: Math.round(loadMs), receives: report.receives, emptyReceives: report.emptyReceives, concurrency: env.options.concurrency, leftInQueue: left },
  );
}

async function copyCeiling(env: Environment): Promise<ScenarioResult> {
  const databaseUrl = await freshDatabase(env.postgres, true);
  let report: CopyReport | undefined;
  const postgresBefore = postgresCpuSeconds();
  const child = await runChild(distFile('bench/copy-ceiling.js'), ['--database-url', databaseUrl, '--messages', String(env.options.messages), '--seed', String(env.options.seed)], {
    onLine: (line) => (report = jsonLine<CopyReport>(line, 'ceiling') ?? report),
  });
  const postgresAfter = postgresCpuSeconds();
  if (report === undefined || child.usage === undefined) throw new Error('COPY ceiling reported nothing');
  const rows = await count(databaseUrl, 'SELECT count(*)::int AS n FROM user_logins');
  return result(
    'copy',
    { messages: report.rows, elapsedMs: report.elapsedMs, cpuSeconds: report.cpuSeconds, peakRssMb: child.usage.maxRssMb, processWallMs: child.wallMs, processCpuSeconds: child.usage.cpuSeconds },
    undefined,
    // Includes the CREATE of nothing but the COPY itself: the child connects, copies and leaves.
    postgresBefore === undefined || postgresAfter === undefined ? undefined : postgresAfter - postgresBefore,
    { rowsInTable: rows, note: 'rows are the accepted events (malformed ones produce no row); masking happens before the clock starts; peak RSS includes the prepared rows' },
  );
}

interface PipelineLog {
  readonly msg?: string;
  /** ISO time: the logger uses pino's isoTime. */
  readonly time?: string;
  readonly messages?: number;
}

/** Env and flags of `login-etl run` against the bench's emulator and a database. */
function pipelineEnv(env: Environment, queueUrl: string, databaseUrl: string): Record<string, string> {
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
function pipelineArgs(env: Environment, drain: boolean, sqsClient: 'lean' | 'sdk' = 'lean'): string[] {
  const c = env.options.concurrency;
  const bytes = Math.max(64, c * 10) * 1_048_576;
  return ['run', ...(drain ? ['--drain'] : []), '--receive-concurrency', String(c), '--pg-pool-max', String(c), '--max-in-flight-bytes', String(bytes), '--sqs-client', sqsClient];
}

async function pipelineRun(env: Environment, sqsClient: 'lean' | 'sdk'): Promise<ScenarioResult> {
  const databaseUrl = await freshDatabase(env.postgres, false);
  const { queueUrl, loadMs } = await freshQueue(env, env.bodies);
  let startedAtMs: number | undefined;
  let lastCommitAtMs: number | undefined;
  let cpuAtStart: number | undefined;
  let summary: Record<string, unknown> | undefined;
  let pid: number | undefined;
  const { value: child, emulatorCpu, postgresCpu } = await bracket(env, async () => {
    const running = startChild(distFile('src/cli.js'), pipelineArgs(env, true, sqsClient), {
      env: pipelineEnv(env, queueUrl, databaseUrl),
      nodeArgs: profileArgs(env),
      onLine: (line) => {
        const log = jsonLine<PipelineLog>(line, 'msg');
        if (log === undefined) return;
        const atMs = log.time === undefined ? undefined : Date.parse(log.time);
        if (log.msg === 'batch committed') lastCommitAtMs = atMs;
        else if (log.msg === 'pipeline started') {
          startedAtMs = atMs;
          cpuAtStart = pid === undefined ? undefined : processCpuSeconds(pid);
        } else if (log.msg === 'pipeline stopped') summary = log as Record<string, unknown>;
      },
    });
    pid = running.child.pid;
    const done = await running.exited;
    if (done.code !== 0) throw new Error(`login-etl run exited with ${done.code ?? done.signal}:\n${done.stderrTail.slice(-4_000)}`);
    return done;
  });
  if (child.usage === undefined || startedAtMs === undefined || lastCommitAtMs === undefined || summary === undefined) {
    throw new Error('the pipeline run logged no start, commit or summary');
  }
  const rows = await count(databaseUrl, 'SELECT count(*)::int AS n FROM user_logins');
  const ledger = await count(databaseUrl, 'SELECT count(*)::int AS n FROM login_etl.processed_messages');
  const left = await queueDepth(env.sqs, queueUrl);
  await env.sqs.send(new DeleteQueueCommand({ QueueUrl: queueUrl }));
  const cpuSeconds = child.usage.cpuSeconds - (cpuAtStart ?? 0);
  return result(
    sqsClient === 'sdk' ? 'pipeline-sdk' : 'pipeline',
    { messages: env.bodies.length, elapsedMs: lastCommitAtMs - startedAtMs, cpuSeconds, peakRssMb: child.usage.maxRssMb, processWallMs: child.wallMs, processCpuSeconds: child.usage.cpuSeconds },
    emulatorCpu,
    postgresCpu,
    {
      loadMs: Math.round(loadMs),
      args: pipelineArgs(env, true, sqsClient),
      window: "'pipeline started' log line to the last 'batch committed' line; CPU from 'pipeline started' to exit (drain check included)",
      cpuAtStartSeconds: cpuAtStart,
      summary,
      rowsInTable: rows,
      expectedRows: env.valid,
      ledgerRows: ledger,
      leftInQueue: left,
    },
  );
}

async function naiveRun(env: Environment): Promise<ScenarioResult> {
  const databaseUrl = await freshDatabase(env.postgres, true);
  const { queueUrl, loadMs } = await freshQueue(env, env.bodies);
  let report: NaiveReport | undefined;
  const { value: child, emulatorCpu, postgresCpu } = await bracket(env, () =>
    runChild(
      distFile('bench/naive-consumer.js'),
      ['--endpoint', env.emulator.endpoint, '--queue-url', queueUrl, '--database-url', databaseUrl, '--messages', String(env.bodies.length), '--concurrency', String(env.options.naiveConcurrency)],
      { nodeArgs: profileArgs(env), onLine: (line) => (report = jsonLine<NaiveReport>(line, 'naive') ?? report) },
    ),
  );
  if (report === undefined || child.usage === undefined) throw new Error('the naive consumer reported nothing');
  const rows = await count(databaseUrl, 'SELECT count(*)::int AS n FROM user_logins');
  await env.sqs.send(new DeleteQueueCommand({ QueueUrl: queueUrl }));
  return result(
    'naive',
    { ...report, peakRssMb: child.usage.maxRssMb, processWallMs: child.wallMs, processCpuSeconds: child.usage.cpuSeconds },
    emulatorCpu,
    postgresCpu,
    { loadMs: Math.round(loadMs), concurrency: env.options.naiveConcurrency, inserted: report.inserted, skipped: report.skipped, rowsInTable: rows },
  );
}

/** Runs a scenario, and reads how busy the rest of the machine was meanwhile (loading included). */
async function measured(env: Environment, name: ScenarioName): Promise<ScenarioResult> {
  const busyBefore = machineBusyCpuSeconds();
  const emulatorBefore = await env.emulator.usage();
  const postgresBefore = postgresCpuSeconds();
  const started = performance.now();
  const r = await RUNNERS[name](env);
  const scenarioWallMs = Math.round(performance.now() - started);
  const busyAfter = machineBusyCpuSeconds();
  const emulatorAfter = await env.emulator.usage();
  const postgresAfter = postgresCpuSeconds();
  const ours = (r.processCpuSeconds ?? 0) + (emulatorAfter.cpuSeconds - emulatorBefore.cpuSeconds) + ((postgresAfter ?? 0) - (postgresBefore ?? 0));
  // The bench's own process (loading the queue) counts as "other" too; it is small beside a run.
  const otherCpuSeconds = busyBefore === undefined || busyAfter === undefined ? undefined : busyAfter - busyBefore - ours;
  return { ...r, otherCpuSeconds, scenarioWallMs };
}

/**
 * Not measured: a few thousand messages through the emulator first, so that the first scenario
 * does not pay for the emulator's JIT warm-up and the others do not get it for free.
 */
async function warmUp(env: Environment): Promise<void> {
  const bodies = env.bodies.slice(0, WARM_UP_MESSAGES);
  const { queueUrl } = await freshQueue(env, bodies);
  await runChild(distFile('bench/queue-ceiling.js'), [
    '--client', 'stock', '--endpoint', env.emulator.endpoint, '--queue-url', queueUrl, '--messages', String(bodies.length), '--concurrency', String(env.options.concurrency),
  ]);
  await env.sqs.send(new DeleteQueueCommand({ QueueUrl: queueUrl }));
}

const WARM_UP_MESSAGES = 5_000;

const RUNNERS: Record<ScenarioName, (env: Environment) => Promise<ScenarioResult>> = {
  'queue-stock': (env) => queueCeiling(env, 'stock'),
  'queue-pipeline': (env) => queueCeiling(env, 'pipeline'),
  'queue-sdk': (env) => queueCeiling(env, 'sdk'),
  copy: copyCeiling,
  pipeline: (env) => pipelineRun(env, 'lean'),
  'pipeline-sdk': (env) => pipelineRun(env, 'sdk'),
  naive: naiveRun,
};

interface Ratio {
  readonly name: string;
  readonly value: number | undefined;
  readonly target: string | undefined;
  readonly met: boolean | undefined;
}

function ratios(results: readonly ScenarioResult[]): Ratio[] {
  const get = (name: ScenarioName) => results.find((r) => r.scenario === name);
  const pipeline = get('pipeline');
  const divide = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || b === 0 ? undefined : a / b);
  const ratio = (name: string, value: number | undefined, target?: { atLeast?: number; atMost?: number }): Ratio => ({
    name,
    value,
    target: target?.atLeast !== undefined ? `>= ${target.atLeast}` : target?.atMost !== undefined ? `<= ${target.atMost}` : undefined,
    met:
      value === undefined || target === undefined
        ? undefined
        : target.atLeast !== undefined
          ? value >= target.atLeast
          : value <= (target.atMost ?? Infinity),
  });
  return [
    ratio('pipeline msgs/s ÷ stock-SDK queue ceiling', divide(pipeline?.msgsPerSecond, get('queue-stock')?.msgsPerSecond), { atLeast: 1.5 }),
    ratio('pipeline msgs/s ÷ naive', divide(pipeline?.msgsPerSecond, get('naive')?.msgsPerSecond), { atLeast: 8 }),
    ratio('pipeline CPU per message ÷ emulator CPU per message', divide(pipeline?.cpuSeconds, pipeline?.emulatorCpuSeconds), { atMost: 1 }),
    ratio("pipeline msgs/s ÷ pipeline's-Queue ceiling", divide(pipeline?.msgsPerSecond, get('queue-pipeline')?.msgsPerSecond)),
    ratio("pipeline's-Queue ceiling ÷ stock-SDK ceiling", divide(get('queue-pipeline')?.msgsPerSecond, get('queue-stock')?.msgsPerSecond)),
    ratio('pipeline msgs/s ÷ COPY ceiling', divide(pipeline?.msgsPerSecond, get('copy')?.msgsPerSecond)),
    // The client decision: the lean client stays only if it is at least 25% cheaper per message.
    ratio('lean ÷ tuned-SDK consumer CPU per message, queue ceilings (1b ÷ 1c)', divide(get('queue-pipeline')?.cpuSecondsPer10k, get('queue-sdk')?.cpuSecondsPer10k), { atMost: 0.75 }),
    ratio('lean ÷ tuned-SDK consumer CPU per message, pipeline (3 ÷ 3b)', divide(pipeline?.cpuSecondsPer10k, get('pipeline-sdk')?.cpuSecondsPer10k), { atMost: 0.75 }),
  ];
}

const fixed = (n: number | undefined, digits: number) => (n === undefined ? '—' : n.toFixed(digits));

function table(results: readonly ScenarioResult[], computed: readonly Ratio[]): string {
  const head = ['scenario', 'msgs/s', 'CPU s/10k', 'peak RSS MB', 'emulator CPU s/10k', 'postgres CPU s/10k', 'other load (cores)'];
  const rows = results.map((r) => [
    r.label,
    fixed(r.msgsPerSecond, 0),
    fixed(r.cpuSecondsPer10k, 2),
    fixed(r.peakRssMb, 0),
    fixed(r.emulatorCpuSecondsPer10k, 2),
    fixed(r.postgresCpuSecondsPer10k, 2),
    fixed(r.otherCpuSeconds === undefined ? undefined : r.otherCpuSeconds / (r.scenarioWallMs / 1000), 2),
  ]);
  const out = [formatTable([head, ...rows], { indent: '', align: head.map((_, i) => (i === 0 ? 'left' : 'right')) }), ''];
  for (const r of computed) {
    const verdict = r.met === undefined ? '' : r.met ? '  met' : '  NOT met';
    out.push(`${r.name}: ${fixed(r.value, 2)}${r.target === undefined ? '' : ` (target ${r.target})${verdict}`}`);
  }
  return out.join('\n');
}

function machine(): Record<string, unknown> {
  const list = cpus();
  return {
    cpuModel: list[0]?.model ?? 'unknown',
    cpuCount: list.length,
    totalMemoryMb: Math.round(totalmem() / 1024 / 1024),
    node: process.version,
    os: `${platform()} ${release()}`,
  };
}

async function writeResults(dir: string, data: Record<string, unknown>): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = `${dir}/${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
  await writeFile(file, `${JSON.stringify(data, null, 2)}\n`);
  return file;
}

/** A TCP port free right now, for the consumer's /metrics. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address !== 'object') throw new Error('no free port');
  return address.port;
}

/** The p50 and p99 of login_etl_event_lag_seconds as the consumer's /metrics reports them, in ms. */
async function scrapeLag(port: number): Promise<{ p50Ms: number | undefined; p99Ms: number | undefined; observed: number }> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const buckets = histogramBuckets(text, 'login_etl_event_lag_seconds');
  const ms = (q: number) => {
    const seconds = histogramQuantile(q, buckets);
    return seconds === undefined ? undefined : Math.round(seconds * 1000);
  };
  return { p50Ms: ms(0.5), p99Ms: ms(0.99), observed: buckets.at(-1)?.count ?? 0 };
}

/**
 * `--follow-minutes`: a steady producer at `rate`, `run` without --drain, the consumer's RSS
 * sampled; with `lag`, the consumer's event-lag histogram is read once the queue is empty.
 */
async function follow(env: Environment, minutes: number, rate: number, lag = false): Promise<Record<string, unknown>> {
  const { options } = env;
  const databaseUrl = await freshDatabase(env.postgres, false);
  const { queueUrl } = await freshQueue(env, []);
  const metricsPort = lag ? await freePort() : undefined;
  const childEnv = { ...pipelineEnv(env, queueUrl, databaseUrl), ...(metricsPort === undefined ? {} : { LOGIN_ETL_HTTP_PORT: String(metricsPort), LOGIN_ETL_HTTP_HOST: '127.0.0.1' }) };
  let onStarted: () => void = () => undefined;
  const started$ = new Promise<void>((resolve) => {
    onStarted = resolve;
  });
  const running = startChild(distFile('src/cli.js'), pipelineArgs(env, false), {
    env: childEnv,
    onLine: (line) => {
      if (jsonLine<PipelineLog>(line, 'msg')?.msg === 'pipeline started') onStarted();
    },
  });
  const pid = running.child.pid;
  if (pid === undefined) throw new Error('could not start login-etl run');
  // Messages sent while the consumer starts up would measure its start-up, not its lag.
  await Promise.race([started$, running.exited.then(() => Promise.reject(new Error('login-etl run exited before it started')))]);
  const samples: { atSeconds: number; rssMb: number }[] = [];
  const started = performance.now();
  const endAt = started + minutes * 60_000;
  const tickMs = 100;
  const perTick = rate / (1000 / tickMs);
  let owed = 0;
  let sent = 0;
  let nextSample = started;
  let cursor = 0;
  const sampleRss = () => {
    const rssMb = statusMb(pid, 'VmRSS');
    if (rssMb !== undefined) samples.push({ atSeconds: Math.round((performance.now() - started) / 1000), rssMb });
  };
  // The producer: a fixed number of messages every 100 ms, so the rate holds even if a send is slow.
  while (performance.now() < endAt) {
    const tickStart = performance.now();
    owed += perTick;
    const n = Math.floor(owed);
    owed -= n;
    const bodies: string[] = [];
    for (let i = 0; i < n; i += 1) {
      bodies.push(env.bodies[cursor % env.bodies.length] ?? '{}');
      cursor += 1;
    }
    if (bodies.length > 0) sent += await sendLines(env.sqs, queueUrl, bodies);
    if (performance.now() >= nextSample) {
      sampleRss();
      nextSample += options.sampleSeconds * 1000;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, tickMs - (performance.now() - tickStart))));
  }
  // Let the consumer catch up, then stop it as an operator would.
  const drainDeadline = performance.now() + 60_000;
  while ((await queueDepth(env.sqs, queueUrl)) > 0 && performance.now() < drainDeadline) await new Promise((r) => setTimeout(r, 500));
  sampleRss();
  const eventLag = metricsPort === undefined ? undefined : await scrapeLag(metricsPort);
  running.child.kill('SIGTERM');
  const done = await running.exited;
  const rows = await count(databaseUrl, 'SELECT count(*)::int AS n FROM login_etl.processed_messages');
  // The first fifth (at least 10 s) is start-up: modules load and V8's heap grows to its working
  // size. Flat or not is judged on the samples after it.
  const warmUpSeconds = Math.max(10, minutes * 60 * 0.2);
  const steady = samples.filter((s) => s.atSeconds >= warmUpSeconds);
  const quarter = Math.max(1, Math.floor(steady.length / 4));
  const mean = (xs: readonly { rssMb: number }[]) => xs.reduce((s, x) => s + x.rssMb, 0) / Math.max(1, xs.length);
  const firstQuartileMb = mean(steady.slice(0, quarter));
  const lastQuartileMb = mean(steady.slice(-quarter));
  const growthPercent = ((lastQuartileMb - firstQuartileMb) / firstQuartileMb) * 100;
  return {
    minutes,
    rateMsgsPerSecond: rate,
    ...(eventLag === undefined ? {} : { eventLag }),
    sent,
    committed: rows,
    exitCode: done.code,
    peakRssMb: done.usage?.maxRssMb,
    cpuSeconds: done.usage?.cpuSeconds,
    samples,
    warmUpSeconds,
    firstQuartileMeanRssMb: firstQuartileMb,
    lastQuartileMeanRssMb: lastQuartileMb,
    growthPercent,
    flat: growthPercent <= 10,
    flatMeans: 'after the warm-up, mean RSS of the last quarter of the samples at most 10% above the mean of the first quarter',
  };
}

/** One drain of a full queue by `count` `login-etl run --drain` processes started together. */
async function scaleRun(env: Environment, instanceCount: number): Promise<Record<string, unknown>> {
  const databaseUrl = await freshDatabase(env.postgres, false);
  const { queueUrl } = await freshQueue(env, env.bodies);
  const instances = Array.from({ length: instanceCount }, () => ({
    startedAtMs: undefined as number | undefined,
    lastCommitAtMs: undefined as number | undefined,
    summary: undefined as Record<string, unknown> | undefined,
    pid: undefined as number | undefined,
    cpuAtStart: undefined as number | undefined,
  }));
  const { value: children, emulatorCpu, postgresCpu } = await bracket(env, async () => {
    const childEnv = pipelineEnv(env, queueUrl, databaseUrl);
    const running = instances.map((instance) => {
      const child = startChild(distFile('src/cli.js'), pipelineArgs(env, true), {
        env: childEnv,
        onLine: (line) => {
          const log = jsonLine<PipelineLog>(line, 'msg');
          const atMs = log?.time === undefined ? undefined : Date.parse(log.time);
          if (log?.msg === 'batch committed') instance.lastCommitAtMs = atMs;
          else if (log?.msg === 'pipeline started') {
            instance.startedAtMs = atMs;
            instance.cpuAtStart = instance.pid === undefined ? undefined : processCpuSeconds(instance.pid);
          } else if (log?.msg === 'pipeline stopped') instance.summary = log as Record<string, unknown>;
        },
      });
      instance.pid = child.child.pid;
      return child.exited;
    });
    const done = await Promise.all(running);
    const failed = done.find((d) => d.code !== 0);
    if (failed !== undefined) throw new Error(`login-etl run exited with ${failed.code ?? failed.signal}:\n${failed.stderrTail.slice(-4_000)}`);
    return done;
  });
  const starts = instances.flatMap((i) => i.startedAtMs ?? []);
  const commits = instances.flatMap((i) => i.lastCommitAtMs ?? []);
  if (starts.length !== instanceCount || commits.length === 0) throw new Error('an instance logged no start, or none committed');
  const elapsedMs = Math.max(...commits) - Math.min(...starts);
  const cpuSeconds = children.reduce((sum, c, i) => sum + (c.usage?.cpuSeconds ?? 0) - (instances[i]?.cpuAtStart ?? 0), 0);
  const rows = await count(databaseUrl, 'SELECT count(*)::int AS n FROM user_logins');
  const rejected = await count(databaseUrl, 'SELECT count(*)::int AS n FROM login_etl.rejected_messages');
  const ledger = await count(databaseUrl, 'SELECT count(*)::int AS n FROM login_etl.processed_messages');
  const left = await queueDepth(env.sqs, queueUrl);
  await env.sqs.send(new DeleteQueueCommand({ QueueUrl: queueUrl }));
  const per10k = (seconds: number | undefined) => (seconds === undefined ? undefined : (seconds / env.bodies.length) * 10_000);
  return {
    instances: instanceCount,
    messages: env.bodies.length,
    elapsedMs: Math.round(elapsedMs),
    msgsPerSecond: env.bodies.length / (elapsedMs / 1000),
    consumerCpuSecondsPer10k: per10k(cpuSeconds),
    emulatorCpuSecondsPer10k: per10k(emulatorCpu),
    postgresCpuSecondsPer10k: per10k(postgresCpu),
    peakRssMbPerInstance: children.map((c) => c.usage?.maxRssMb),
    receivedPerInstance: instances.map((i) => i.summary?.received),
    duplicatesSkipped: instances.reduce((sum, i) => sum + Number(i.summary?.duplicates ?? 0), 0),
    rowsInTable: rows,
    expectedRows: env.valid,
    rejectedRows: rejected,
    expectedRejected: env.bodies.length - env.valid,
    ledgerRows: ledger,
    leftInQueue: left,
    exact: rows === env.valid && rejected === env.bodies.length - env.valid && ledger === env.bodies.length && left === 0,
    window: "first 'pipeline started' line to the last 'batch committed' line of any instance; CPU of all instances from their 'pipeline started' to exit",
  };
}

function scaleTable(runs: readonly Record<string, unknown>[]): string {
  const head = ['instances', 'msgs/s', 'msgs/s per instance', 'consumer CPU s/10k', 'emulator CPU s/10k', 'postgres CPU s/10k', 'received per instance', 'exact'];
  const rows = runs.map((r) => {
    const n = r.instances as number;
    return [
      String(n),
      fixed(r.msgsPerSecond as number, 0),
      fixed((r.msgsPerSecond as number) / n, 0),
      fixed(r.consumerCpuSecondsPer10k as number, 2),
      fixed(r.emulatorCpuSecondsPer10k as number | undefined, 2),
      fixed(r.postgresCpuSecondsPer10k as number | undefined, 2),
      (r.receivedPerInstance as unknown[]).join(' / '),
      r.exact ? 'yes' : 'NO',
    ];
  });
  return formatTable([head, ...rows], { indent: '', align: head.map(() => 'right') });
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const loadStart = loadavg();
  const startedAt = new Date().toISOString();
  const log = (line: string) => process.stderr.write(`bench: ${line}\n`);
  log(`starting the emulator and Postgres; ${options.messages} messages`);
  const [emulator, postgres] = await Promise.all([startEmulator(), startLocalPostgres()]);
  const sqs = new SQSClient({ region: 'us-east-1', endpoint: emulator.endpoint, credentials: EMULATOR_CREDENTIALS });
  try {
    const events = generateSampleEvents({ count: options.messages, seed: options.seed });
    const env: Environment = {
      options,
      emulator,
      postgres,
      sqs,
      bodies: events.map((e) => e.body),
      valid: events.filter((e) => e.valid).length,
    };
    let output: Record<string, unknown>;
    if (options.instances !== undefined) {
      log('warming up the emulator (not measured)');
      await warmUp(env);
      const runs: Record<string, unknown>[] = [];
      for (const n of options.instances) {
        log(`${n} instance(s) draining one queue`);
        runs.push(await scaleRun(env, n));
      }
      process.stdout.write(`\n${scaleTable(runs)}\n`);
      output = { kind: 'instances', runs };
    } else if (options.lagSeconds !== undefined) {
      log('warming up the emulator (not measured)');
      await warmUp(env);
      log(`${LABELS.pipeline}: measuring the drain rate`);
      const drained = await measured(env, 'pipeline');
      const rate = Math.max(1, Math.floor(drained.msgsPerSecond / 2));
      log(`event lag: ${options.lagSeconds} s at ${rate} msgs/s, half of the ${fixed(drained.msgsPerSecond, 0)} msgs/s measured`);
      const followed = await follow(env, options.lagSeconds / 60, rate, true);
      const lag = followed.eventLag as { p50Ms: number | undefined; p99Ms: number | undefined; observed: number };
      process.stdout.write(
        `event lag at ${rate} msgs/s (half of the ${fixed(drained.msgsPerSecond, 0)} msgs/s drain rate), ${lag.observed} messages: ` +
          `p50 ${String(lag.p50Ms)} ms, p99 ${String(lag.p99Ms)} ms (target p99 < 250 ms: ${lag.p99Ms !== undefined && lag.p99Ms < 250 ? 'met' : 'NOT met'})\n`,
      );
      output = { kind: 'lag', drain: drained, follow: followed };
    } else if (options.followMinutes !== undefined) {
      log(`follow mode: ${options.followMinutes} min at ${options.followRate} msgs/s`);
      const memory = await follow(env, options.followMinutes, options.followRate);
      process.stdout.write(
        `follow ${options.followMinutes} min at ${options.followRate} msgs/s: sent ${String(memory.sent)}, committed ${String(memory.committed)}; ` +
          `RSS first quarter ${fixed(memory.firstQuartileMeanRssMb as number, 1)} MB, last quarter ${fixed(memory.lastQuartileMeanRssMb as number, 1)} MB ` +
          `(${fixed(memory.growthPercent as number, 1)}%): ${memory.flat ? 'flat' : 'NOT flat'}\n`,
      );
      output = { kind: 'follow', memory };
    } else {
      log('warming up the emulator (not measured)');
      await warmUp(env);
      const results: ScenarioResult[] = [];
      for (const name of options.only) {
        log(`${LABELS[name]}: loading and measuring`);
        const r = await measured(env, name);
        log(`${LABELS[name]}: ${fixed(r.msgsPerSecond, 0)} msgs/s`);
        results.push(r);
      }
      const computed = ratios(results);
      process.stdout.write(`\n${table(results, computed)}\n`);
      log('start-up: login-etl --help, and run --drain of 100 messages');
      const startup = await measureStartup({ sqs, sqsEndpoint: emulator.endpoint, postgres });
      process.stdout.write(`\n${startupTable(startup)}\n`);
      output = { kind: 'drain', scenarios: results, ratios: computed, startup };
    }
    const file = await writeResults(options.resultsDir, {
      startedAt,
      finishedAt: new Date().toISOString(),
      options,
      machine: { ...machine(), loadAverageAtStart: loadStart, loadAverageAtEnd: loadavg() },
      ...output,
    });
    process.stdout.write(`\nresults: ${file}\n`);
  } finally {
    sqs.destroy();
    const emulatorFinal = await emulator.stop();
    if (emulatorFinal !== undefined) log(`emulator used ${emulatorFinal.cpuSeconds.toFixed(1)} s CPU in all, peak RSS ${emulatorFinal.maxRssMb.toFixed(0)} MB`);
    await postgres.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
