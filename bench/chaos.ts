/**
 * The chaos soak: `npm run chaos -- --minutes N [--seed S] [--max-instances 4] [--log-dir DIR]`.
 *
 * Runs 1 to `--max-instances` `login-etl run` processes (the built CLI) on one queue and one
 * database while a producer sends valid and invalid events, and injects faults at random from a
 * seeded generator, in three lanes that run side by side (a fault of one lane may overlap a fault
 * of another, never one of its own):
 *
 * - instances: SIGKILL of a random instance, then a restart to a random count of 1 to the most;
 * - Postgres: a restart (stopped and started on the same port and data directory), statements
 *   slowed past the visibility timeout (a lock on user_logins that INSERT waits for), and INSERT
 *   on user_logins revoked from the pipeline's role, then granted again;
 * - the emulator: paused (SIGSTOP, then SIGCONT), killed and restarted (SIGKILL; it keeps its
 *   messages in SQLite, so a restart loses none, as real SQS does not), and the dead-letter queue
 *   unreachable (the emulator closes every connection that names it).
 *
 * Each fault counts only with evidence that it happened: the process died of SIGKILL, Postgres
 * refused connections and came back with a new start time, the emulator's state was `T`, a
 * statement waited on the lock longer than the visibility timeout, Postgres logged refused
 * INSERTs, the emulator cut requests to the dead-letter queue. Then faults stop, the producer
 * stops, the instances drain the queue, SIGTERM ends them, and the end state is checked
 * (bench/chaos-check.ts). Prints a summary and, last, one JSON line; exits 1 on any violation.
 */
import { GetQueueAttributesCommand, ReceiveMessageCommand, DeleteMessageBatchCommand, SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync, type WriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { freePort } from '../src/embedded/ports.js';
import { startLocalPostgres, templateFrom, type LocalPostgres } from '../src/embedded/postgres.js';
import { EMULATOR_CREDENTIALS } from '../src/embedded/sqs.js';
import { migrate } from '../src/sink/migrate.js';
import { generateKeyText } from '../src/transform/key.js';
import type { ChaosEmulatorCommand, ChaosEmulatorReply } from './chaos-emulator.js';
import { verdict, type SentMessage, type Verdict } from './chaos-check.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const EMULATOR = fileURLToPath(new URL('./chaos-emulator.js', import.meta.url));
const ROLES_SQL = fileURLToPath(new URL('../../deploy/postgres-roles.sql', import.meta.url));

export const FAULT_KINDS = [
  'instance-killed',
  'postgres-restarted',
  'statements-slowed',
  'insert-revoked',
  'emulator-paused',
  'emulator-restarted',
  'dead-letter-queue-unreachable',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface ChaosOptions {
  readonly minutes: number;
  readonly seed: number;
  readonly maxInstances: number;
  /** Kept after the run when given; otherwise a temporary directory, kept only on a violation. */
  readonly logDir: string | undefined;
  readonly print: (line: string) => void;
}

export interface FaultCount {
  /** Faults injected. */
  injected: number;
  /** Of them, those with evidence that they took effect. */
  effective: number;
}

export interface ChaosResult {
  readonly seed: number;
  readonly minutes: number;
  readonly faults: Record<FaultKind, FaultCount>;
  readonly faultsEffective: number;
  /** What each kind's evidence added up to (refused INSERTs logged, cut requests...). */
  readonly evidence: Record<string, number>;
  readonly verdict: Verdict;
  /** Instances that exited without being told to, and the last line of their stderr. */
  readonly unexpectedExits: readonly string[];
  /** Instances that did not exit 0 on the final SIGTERM. */
  readonly unclean: readonly string[];
  readonly drainMs: number;
  readonly drained: boolean;
  readonly logDir: string;
  readonly ok: boolean;
}

/** The visibility timeout of the queue: short, so that what a killed instance held comes back soon. */
const VISIBILITY_TIMEOUT_SECONDS = 4;
const SHUTDOWN_TIMEOUT_SECONDS = 10;
const DRAIN_TIMEOUT_MS = 180_000;
const PRODUCER_INTERVAL_MS = 200;
const INVALID_SHARE = 0.1;
const WRITER_ROLE = 'chaos_pipeline';
const WRITER_PASSWORD = 'chaos-pipeline';

/** mulberry32: a small seeded generator, one per lane so that lanes do not shift each other's draws. */
function generator(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Random {
  readonly #next: () => number;
  constructor(seed: number) {
    this.#next = generator(seed);
  }
  next(): number {
    return this.#next();
  }
  between(min: number, max: number): number {
    return min + this.#next() * (max - min);
  }
  int(min: number, max: number): number {
    return Math.floor(this.between(min, max + 1));
  }
  pick<T>(items: readonly T[]): T {
    const item = items[Math.floor(this.#next() * items.length)];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }
  shuffle<T>(items: readonly T[]): T[] {
    const copy = [...items];
    for (let i = copy.length - 1; i > 0; i -= 1) {
      const j = Math.floor(this.#next() * (i + 1));
      [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
    }
    return copy;
  }
}

/** One holder at a time: the producer's sends and the emulator's faults, so no send's fate is unknown. */
class Mutex {
  #tail: Promise<void> = Promise.resolve();
  async hold<T>(fn: () => Promise<T>): Promise<T> {
    const previous = this.#tail;
    let release: () => void = () => undefined;
    this.#tail = new Promise((resolve) => (release = resolve));
    await previous;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

/** The emulator in its own process, restartable on the same port and data directory. */
class Emulator {
  #child: ChildProcess | undefined;
  #restored = new Map<string, (refused: number) => void>();
  endpoint = '';

  constructor(
    readonly port: number,
    readonly internalPort: number,
    readonly dataDir: string,
    private readonly logFile: WriteStream,
  ) {}

  get pid(): number {
    const pid = this.#child?.pid;
    if (pid === undefined) throw new Error('the emulator is not running');
    return pid;
  }

  async start(): Promise<void> {
    const child = fork(EMULATOR, ['--port', String(this.port), '--internal-port', String(this.internalPort), '--data-dir', this.dataDir], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    child.stdout?.pipe(this.logFile, { end: false });
    child.stderr?.pipe(this.logFile, { end: false });
    this.#child = child;
    this.endpoint = await new Promise<string>((resolve, reject) => {
      child.on('message', (reply: ChaosEmulatorReply) => {
        if (reply.type === 'ready') resolve(reply.endpoint);
        else this.#restored.get(reply.queueName)?.(reply.refused);
      });
      child.once('exit', (code, signal) => reject(new Error(`the emulator exited before it was ready (${code ?? signal})`)));
    });
  }

  command(command: ChaosEmulatorCommand): void {
    this.#child?.send(command);
  }

  /** Ends a cut; resolves with the requests the emulator refused while it lasted. */
  async restore(queueName: string): Promise<number> {
    const refused = new Promise<number>((resolve) => this.#restored.set(queueName, resolve));
    this.command({ type: 'restore', queueName });
    const count = await refused;
    this.#restored.delete(queueName);
    return count;
  }

  /** SIGKILL; resolves with the signal the process died of. */
  async kill(): Promise<NodeJS.Signals | null> {
    const child = this.#child;
    if (child === undefined) return null;
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    child.kill('SIGKILL');
    const signal = await exited;
    this.#child = undefined;
    return signal;
  }

  async stop(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGCONT');
    child.disconnect();
    await Promise.race([exited, sleep(5_000)]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    this.#child = undefined;
  }
}

/** The process state letter from /proc/<pid>/stat: R, S, T (stopped)... */
function processState(pid: number): string | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

interface Instance {
  readonly name: string;
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Set before the soak signals it, so that its exit is not taken for a crash. */
  expected: boolean;
  stderrTail: string;
}

/** The body of event number `n`: a valid login with a user_id of its own, or one of several invalid messages. */
function eventBody(seed: number, n: number, random: Random): { body: string; userId: string | undefined } {
  const ip = `10.${random.int(0, 255)}.${random.int(0, 255)}.${random.int(1, 254)}`;
  const deviceId = `dev-${random.int(0, 1e9)}`;
  if (random.next() >= INVALID_SHARE) {
    const userId = `chaos-${seed}-${n}`;
    const body = { user_id: userId, app_version: `${random.int(0, 9)}.${random.int(0, 20)}.${random.int(0, 9)}`, device_type: random.pick(['ios', 'android', 'web']), ip, locale: random.pick(['RU', 'US', null]), device_id: deviceId };
    return { body: JSON.stringify(body), userId };
  }
  const body = random.pick([
    () => `not json, event ${n}`,
    () => JSON.stringify({ app_version: '1.0.0', device_type: 'ios', ip, device_id: deviceId }),
    () => JSON.stringify({ user_id: n, ip }),
    () => JSON.stringify({ user_id: `bad-ip-${n}`, ip: 'not-an-ip' }),
    () => JSON.stringify({ user_id: `bad-version-${n}`, app_version: 'v1', ip }),
  ])();
  return { body, userId: undefined };
}

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const { print, seed } = options;
  const durationMs = options.minutes * 60_000;
  const logDir = options.logDir ?? (await mkdtemp(join(tmpdir(), `login-etl-chaos-${seed}-`)));
  await mkdir(logDir, { recursive: true });
  const stateDir = await mkdtemp(join(tmpdir(), 'login-etl-chaos-state-'));
  const faults = Object.fromEntries(FAULT_KINDS.map((kind) => [kind, { injected: 0, effective: 0 }])) as Record<FaultKind, FaultCount>;
  const evidence: Record<string, number> = {
    permissionDeniedLogged: 0,
    deadLetterRequestsCut: 0,
    longestLockWaitSeconds: 0,
    instancesStarted: 0,
  };
  const startedAt = performance.now();
  const elapsed = () => `${((performance.now() - startedAt) / 1000).toFixed(1)}s`;
  const event = (line: string) => print(`[${elapsed()}] ${line}`);
  const record = (kind: FaultKind, effective: boolean, detail: string) => {
    faults[kind].injected += 1;
    if (effective) faults[kind].effective += 1;
    event(`${kind}${effective ? '' : ' (no evidence it took effect)'}: ${detail}`);
  };

  let refusedInsertsLogged = 0;
  const pgLog = createWriteStream(join(logDir, 'postgres.log'));
  const postgres: LocalPostgres = await startLocalPostgres({
    template: templateFrom(process.env),
    onLog: (line) => {
      pgLog.write(`${line}\n`);
      if (line.includes('permission denied for table user_logins')) refusedInsertsLogged += 1;
    },
  });
  const emulatorLog = createWriteStream(join(logDir, 'emulator.log'));
  const emulator = new Emulator(await freePort(), await freePort(), join(stateDir, 'sqs'), emulatorLog);
  await mkdir(emulator.dataDir, { recursive: true });
  await emulator.start();
  const sqs = new SQSClient({ region: 'us-east-1', endpoint: emulator.endpoint, credentials: EMULATOR_CREDENTIALS, maxAttempts: 10 });
  const instances = new Set<Instance>();
  const unexpectedExits: string[] = [];
  let stopping = false;
  const admin = new pg.Pool({ connectionString: postgres.urlFor('chaos'), max: 4 });
  admin.on('error', () => undefined);
  try {
    // The database: migrated, with the shipped roles, and a LOGIN user in the writer group that
    // the instances connect as (a superuser would ignore the REVOKE).
    const setup = new pg.Client({ connectionString: postgres.url });
    await setup.connect();
    await setup.query('CREATE DATABASE chaos');
    await setup.end();
    await migrate(admin);
    await admin.query(readFileSync(ROLES_SQL, 'utf8'));
    await admin.query(`CREATE ROLE ${WRITER_ROLE} LOGIN PASSWORD '${WRITER_PASSWORD}' IN ROLE login_etl_writer`);
    const writerUrl = new URL(postgres.urlFor('chaos'));
    writerUrl.username = WRITER_ROLE;
    writerUrl.password = WRITER_PASSWORD;

    const queueName = `chaos-${seed}`;
    const deadLetterName = `chaos-${seed}-dead-letters`;
    const createQueue = async (name: string) => {
      const { CreateQueueCommand } = await import('@aws-sdk/client-sqs');
      const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: { VisibilityTimeout: String(VISIBILITY_TIMEOUT_SECONDS) } }));
      if (QueueUrl === undefined) throw new Error(`no URL for queue ${name}`);
      return QueueUrl;
    };
    const queueUrl = await createQueue(queueName);
    const deadLetterUrl = await createQueue(deadLetterName);

    const env = {
      PATH: process.env.PATH ?? '',
      SQS_QUEUE_URL: queueUrl,
      AWS_ENDPOINT_URL_SQS: emulator.endpoint,
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_REGION: 'us-east-1',
      DATABASE_URL: writerUrl.toString(),
      PII_KEY: generateKeyText(),
      LOG_FORMAT: 'json',
    };
    const args = [
      'run',
      '--wait-time-seconds', '2',
      '--receive-concurrency', '2',
      '--dead-letter-queue-url', deadLetterUrl,
      '--shutdown-timeout-seconds', String(SHUTDOWN_TIMEOUT_SECONDS),
      '--http-port', '0',
    ];
    let instanceCount = 0;
    const startInstance = () => {
      instanceCount += 1;
      evidence.instancesStarted = instanceCount;
      const name = `instance-${instanceCount}`;
      const log = createWriteStream(join(logDir, `${name}.log`));
      const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout?.pipe(log, { end: false });
      child.stderr?.pipe(log, { end: false });
      const instance: Instance = {
        name,
        child,
        expected: false,
        stderrTail: '',
        exited: new Promise((resolve) =>
          child.on('close', (code, signal) => {
            log.end();
            resolve({ code, signal });
          }),
        ),
      };
      child.stderr?.on('data', (chunk: Buffer) => (instance.stderrTail = (instance.stderrTail + chunk.toString()).slice(-2_000)));
      instances.add(instance);
      void instance.exited.then(({ code, signal }) => {
        instances.delete(instance);
        if (instance.expected) return;
        const last = instance.stderrTail.trim().split('\n').at(-1) ?? '';
        unexpectedExits.push(`${name} exited by itself (${code ?? signal}): ${last}`);
        event(`${name} exited by itself (${code ?? signal}): ${last}`);
        if (!stopping) startInstance();
      });
      return instance;
    };
    const initial = new Random(seed).int(1, options.maxInstances);
    for (let i = 0; i < initial; i += 1) startInstance();
    event(`seed ${seed}: ${initial} instance(s), queue visibility timeout ${VISIBILITY_TIMEOUT_SECONDS} s, logs in ${logDir}`);

    // The producer: 10 events every 200 ms; the emulator's faults wait for a send in progress,
    // so every send's outcome is known (the producer is not what is under test).
    const sent: SentMessage[] = [];
    const emulatorLock = new Mutex();
    const producerRandom = new Random(seed ^ 0x5eed);
    let producing = true;
    const producer = (async () => {
      let n = 0;
      while (producing) {
        const batch = Array.from({ length: 10 }, () => eventBody(seed, (n += 1), producerRandom));
        await emulatorLock.hold(async () => {
          const response = await sqs.send(
            new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: batch.map((e, i) => ({ Id: String(i), MessageBody: e.body })) }),
          );
          if ((response.Failed ?? []).length > 0) throw new Error(`the producer's send failed: ${response.Failed?.[0]?.Code ?? ''}`);
          for (const entry of response.Successful ?? []) {
            const item = batch[Number(entry.Id)];
            if (item === undefined || entry.MessageId === undefined) throw new Error('the producer got an answer it cannot match');
            sent.push({ messageId: entry.MessageId, userId: item.userId });
          }
        });
        await sleep(PRODUCER_INTERVAL_MS);
      }
    })();

    const until = performance.now() + durationMs;
    const timeLeft = () => until - performance.now();
    const vt = VISIBILITY_TIMEOUT_SECONDS * 1000;

    /** Runs a lane: first every kind once (in a seeded order), again until it took effect, then at random. */
    const lane = async <K extends FaultKind>(laneSeed: number, kinds: readonly K[], gapMs: [number, number], inject: (kind: K, random: Random) => Promise<boolean>) => {
      const random = new Random(seed ^ laneSeed);
      const pending = random.shuffle(kinds);
      while (timeLeft() > 0 && !stopping) {
        await sleep(random.between(...gapMs));
        if (timeLeft() <= 0) break;
        const kind = pending.shift() ?? random.pick(kinds);
        const effective = await inject(kind, random);
        if (!effective && !pending.includes(kind) && faults[kind].effective === 0) pending.unshift(kind);
      }
    };

    const instanceLane = lane(0x1, ['instance-killed'] as const, [1_500, 5_000], async (_kind, random) => {
      const running = [...instances].filter((i) => !i.expected);
      if (running.length === 0) {
        startInstance();
        return false;
      }
      const victim = random.pick(running);
      victim.expected = true;
      victim.child.kill('SIGKILL');
      const { signal } = await victim.exited;
      record('instance-killed', signal === 'SIGKILL', `${victim.name} died of ${signal ?? 'an exit'}`);
      await sleep(random.between(200, 2_000));
      const target = random.int(1, options.maxInstances);
      while (instances.size < target) startInstance();
      return signal === 'SIGKILL';
    });

    const postgresLane = lane(0x2, ['postgres-restarted', 'statements-slowed', 'insert-revoked'] as const, [1_000, 4_000], async (kind, random) => {
      if (kind === 'postgres-restarted') {
        const before = await retry(() => admin.query<{ t: string }>('SELECT pg_postmaster_start_time()::text AS t'));
        await postgres.pause();
        const probe = new pg.Client({ connectionString: postgres.url, connectionTimeoutMillis: 2_000 });
        const refused = await probe.connect().then(
          async () => (await probe.end(), false),
          (err: unknown) => (err as { code?: string }).code === 'ECONNREFUSED',
        );
        const downMs = random.between(500, 5_000);
        await sleep(downMs);
        await postgres.resume();
        // The pool's connections died with the server; the first queries after it may fail.
        const after = await retry(() => admin.query<{ t: string }>('SELECT pg_postmaster_start_time()::text AS t'));
        const restarted = refused && before.rows[0]?.t !== after.rows[0]?.t;
        record(kind, restarted, `down ${Math.round(downMs)} ms, connections refused: ${refused}, new start time: ${before.rows[0]?.t !== after.rows[0]?.t}`);
        return restarted;
      }
      if (kind === 'statements-slowed') {
        // A lock INSERT must wait for, held longer than the visibility timeout: the writes in
        // flight outlast their messages' visibility unless the heartbeat extends it.
        const holdMs = vt + random.between(1_000, 5_000);
        const locker = await retry(() => admin.connect());
        let longestWaitSeconds = 0;
        try {
          await locker.query('BEGIN');
          await locker.query('LOCK TABLE user_logins IN SHARE ROW EXCLUSIVE MODE');
          const end = performance.now() + holdMs;
          while (performance.now() < end) {
            await sleep(250);
            const { rows } = await admin.query<{ seconds: number | null }>(
              `SELECT max(extract(epoch FROM clock_timestamp() - a.query_start))::float8 AS seconds
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE NOT l.granted AND l.relation = 'user_logins'::regclass`,
            );
            longestWaitSeconds = Math.max(longestWaitSeconds, rows[0]?.seconds ?? 0);
          }
          await locker.query('COMMIT');
        } finally {
          locker.release();
        }
        evidence.longestLockWaitSeconds = Math.max(evidence.longestLockWaitSeconds ?? 0, Math.round(longestWaitSeconds * 10) / 10);
        const effective = longestWaitSeconds > VISIBILITY_TIMEOUT_SECONDS;
        record(kind, effective, `lock held ${Math.round(holdMs)} ms; an INSERT waited ${longestWaitSeconds.toFixed(1)} s (visibility timeout ${VISIBILITY_TIMEOUT_SECONDS} s)`);
        return effective;
      }
      const before = refusedInsertsLogged;
      await retry(() => admin.query('REVOKE INSERT ON user_logins FROM login_etl_writer'));
      const holdMs = random.between(1_000, 6_000);
      await sleep(holdMs);
      await retry(() => admin.query('GRANT INSERT ON user_logins TO login_etl_writer'));
      const refused = refusedInsertsLogged - before;
      evidence.permissionDeniedLogged = refusedInsertsLogged;
      record(kind, refused > 0, `revoked for ${Math.round(holdMs)} ms; Postgres logged ${refused} refused INSERT(s)`);
      return refused > 0;
    });

    const emulatorLane = lane(0x3, ['emulator-paused', 'emulator-restarted', 'dead-letter-queue-unreachable'] as const, [1_000, 4_000], async (kind, random) => {
      if (kind === 'dead-letter-queue-unreachable') {
        emulator.command({ type: 'cut', queueName: deadLetterName });
        const holdMs = random.between(1_000, 6_000);
        await sleep(holdMs);
        const refused = await emulator.restore(deadLetterName);
        evidence.deadLetterRequestsCut = (evidence.deadLetterRequestsCut ?? 0) + refused;
        record(kind, refused > 0, `cut for ${Math.round(holdMs)} ms; ${refused} request(s) to it got no answer`);
        return refused > 0;
      }
      return await emulatorLock.hold(async () => {
        if (kind === 'emulator-paused') {
          const pid = emulator.pid;
          process.kill(pid, 'SIGSTOP');
          await sleep(50);
          const state = processState(pid);
          const holdMs = random.between(500, vt + 3_000);
          await sleep(holdMs);
          process.kill(pid, 'SIGCONT');
          record(kind, state === 'T', `stopped for ${Math.round(holdMs)} ms (process state ${state ?? 'unknown'})`);
          return state === 'T';
        }
        const signal = await emulator.kill();
        const downMs = random.between(0, 3_000);
        await sleep(downMs);
        await emulator.start();
        record(kind, signal === 'SIGKILL', `died of ${signal ?? 'nothing'}, restarted after ${Math.round(downMs)} ms`);
        return signal === 'SIGKILL';
      });
    });

    await Promise.all([instanceLane, postgresLane, emulatorLane]);
    producing = false;
    await producer;
    event(`faults stopped; ${sent.length} messages sent; draining`);

    // The drain: the instances still running finish the queue; at least one runs.
    if (instances.size === 0) startInstance();
    const drainStarted = performance.now();
    let drained = false;
    let lastDepth = -1;
    let emptyChecks = 0;
    while (performance.now() - drainStarted < DRAIN_TIMEOUT_MS) {
      lastDepth = await queueDepth(sqs, queueUrl);
      emptyChecks = lastDepth === 0 ? emptyChecks + 1 : 0;
      if (emptyChecks >= 3) {
        drained = true;
        break;
      }
      await sleep(1_000);
    }
    const drainMs = Math.round(performance.now() - drainStarted);
    event(drained ? `queue empty after ${drainMs} ms` : `queue not empty after ${drainMs} ms: ${lastDepth} messages left`);

    stopping = true;
    const unclean: string[] = [];
    await Promise.all(
      [...instances].map(async (instance) => {
        instance.expected = true;
        instance.child.kill('SIGTERM');
        const timer = setTimeout(() => instance.child.kill('SIGKILL'), (SHUTDOWN_TIMEOUT_SECONDS + 10) * 1000);
        const { code, signal } = await instance.exited;
        clearTimeout(timer);
        if (code !== 0) unclean.push(`${instance.name} ended with ${code ?? signal} after SIGTERM: ${instance.stderrTail.trim().split('\n').at(-1) ?? ''}`);
      }),
    );

    const end = await readEndState(admin, sqs, queueUrl, deadLetterUrl);
    const result = verdict(sent, end);
    const faultsEffective = FAULT_KINDS.reduce((sum, kind) => sum + faults[kind].effective, 0);
    const ok = result.violations.length === 0 && drained && unclean.length === 0;
    return { seed, minutes: options.minutes, faults, faultsEffective, evidence, verdict: result, unexpectedExits, unclean, drainMs, drained, logDir, ok };
  } finally {
    stopping = true;
    for (const instance of instances) {
      instance.expected = true;
      instance.child.kill('SIGKILL');
    }
    await Promise.all([...instances].map((i) => i.exited));
    sqs.destroy();
    await admin.end().catch(() => undefined);
    await emulator.stop();
    await postgres.stop();
    await new Promise<void>((resolve) => pgLog.end(resolve));
    await new Promise<void>((resolve) => emulatorLog.end(resolve));
    await rm(stateDir, { recursive: true, force: true });
  }
}

async function retry<T>(fn: () => Promise<T>, attempts = 20): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= attempts) throw err;
      await sleep(250);
    }
  }
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

async function readEndState(admin: pg.Pool, sqs: SQSClient, queueUrl: string, deadLetterUrl: string) {
  const rows = await admin.query<{ user_id: string; n: number }>('SELECT user_id, count(*)::int AS n FROM user_logins GROUP BY user_id');
  const rejections = await admin.query<{ message_id: string; claimed: boolean; forwarded: boolean; forward_error: string | null }>(
    'SELECT message_id, forward_claimed_at IS NOT NULL AS claimed, forwarded_at IS NOT NULL AS forwarded, forward_error FROM login_etl.rejected_messages',
  );
  // Every letter, counted by the source message id it carries: received and deleted until the
  // dead-letter queue is empty.
  const deadLetters = new Map<string, number>();
  for (let empty = 0; empty < 2; ) {
    const { Messages = [] } = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: deadLetterUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 600, MessageAttributeNames: ['All'] }),
    );
    if (Messages.length === 0) {
      empty += (await queueDepth(sqs, deadLetterUrl)) === 0 ? 1 : 0;
      continue;
    }
    for (const m of Messages) {
      const id = m.MessageAttributes?.login_etl_message_id?.StringValue ?? '(no message id attribute)';
      deadLetters.set(id, (deadLetters.get(id) ?? 0) + 1);
    }
    await sqs.send(
      new DeleteMessageBatchCommand({ QueueUrl: deadLetterUrl, Entries: Messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle ?? '' })) }),
    );
  }
  return {
    rows: new Map(rows.rows.map((r) => [r.user_id, r.n])),
    rejections: new Map(rejections.rows.map((r) => [r.message_id, { claimed: r.claimed, forwarded: r.forwarded, forwardError: r.forward_error }])),
    deadLetters,
    queueDepth: await queueDepth(sqs, queueUrl),
  };
}

function summaryLines(result: ChaosResult): string[] {
  const v = result.verdict;
  const lines = [
    '',
    `chaos soak, seed ${result.seed}, ${result.minutes} min: ${result.ok ? 'EXACT' : 'VIOLATIONS'}`,
    '',
    'fault                           injected  with evidence',
    ...FAULT_KINDS.map((kind) => `${kind.padEnd(32)}${String(result.faults[kind].injected).padStart(8)}${String(result.faults[kind].effective).padStart(15)}`),
    `${'total'.padEnd(32)}${String(FAULT_KINDS.reduce((s, k) => s + result.faults[k].injected, 0)).padStart(8)}${String(result.faultsEffective).padStart(15)}`,
    '',
    `evidence: ${Object.entries(result.evidence).map(([k, n]) => `${k} ${n}`).join(', ')}`,
    `sent ${v.sent} (${v.sentValid} valid, ${v.sentInvalid} invalid); committed ${v.committed}, rejected ${v.rejected}; lost ${v.lost}, duplicated ${v.duplicated}, misplaced ${v.misplaced}, unknown ${v.unknown}`,
    `dead letters: forwarded more than once ${v.forwardedTwice}, not forwarded ${v.notForwarded}, sent but unconfirmed (not sent again) ${v.unconfirmed}; queue left ${v.queueDepth}; drain ${result.drained ? `ended in ${result.drainMs} ms` : `did not end in ${result.drainMs} ms`}`,
  ];
  for (const line of result.unexpectedExits) lines.push(`unexpected exit: ${line}`);
  for (const line of result.unclean) lines.push(`unclean stop: ${line}`);
  for (const line of v.violations) lines.push(`VIOLATION ${line}`);
  lines.push(result.ok ? `logs: ${result.logDir}` : `logs, and every id of every violation in violations.json: ${result.logDir}`);
  return lines;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '10' },
      seed: { type: 'string' },
      'max-instances': { type: 'string', default: '4' },
      'log-dir': { type: 'string' },
    },
  });
  const minutes = Number(values.minutes);
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
  const maxInstances = Number(values['max-instances']);
  if (!(minutes > 0) || !Number.isInteger(seed) || !Number.isInteger(maxInstances) || maxInstances < 1 || maxInstances > 4) {
    process.stderr.write('usage: npm run chaos -- [--minutes N (> 0)] [--seed S (integer)] [--max-instances 1-4] [--log-dir DIR]\n');
    process.exit(2);
  }
  const print = (line: string) => process.stdout.write(`${line}\n`);
  print(`chaos soak: ${minutes} min, seed ${seed} (repeat with --seed ${seed})`);
  const result = await runChaos({ minutes, seed, maxInstances, logDir: values['log-dir'], print });
  for (const line of summaryLines(result)) print(line);
  if (result.ok && values['log-dir'] === undefined) await rm(result.logDir, { recursive: true, force: true });
  if (!result.ok) await writeFile(join(result.logDir, 'violations.json'), `${JSON.stringify(result.verdict.details, null, 2)}\n`);
  const { details: _details, ...shown } = result.verdict;
  print(JSON.stringify({ chaos: { ...result, verdict: shown } }));
  process.exitCode = result.ok ? 0 : 1;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err: unknown) => {
    process.stderr.write(`chaos: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
