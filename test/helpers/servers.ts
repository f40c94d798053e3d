/**
 * Real servers for integration tests, started by the suite itself: a Postgres and the fauxqs SQS
 * emulator, with a fresh database and queue per test.
 *
 * `npm test` (test/run.ts) starts one Postgres and one emulator for the whole run and names them
 * in LOGIN_ETL_TEST_POSTGRES_URL and LOGIN_ETL_TEST_SQS_ENDPOINT; each test file then only
 * creates databases and queues on them (and drops its databases when it stops, unless the run
 * deletes that server whole: SHARED_POSTGRES_DISPOSABLE_VARIABLE). A file run on its
 * own, or a test that stops, restarts or reconfigures its server (`ownPostgres`), starts a
 * Postgres of its own; a file run on its own starts its own emulator, in its process.
 *
 * A test file calls `useServers()` once, at its top level: it starts the servers before the
 * file's first test and stops them after its last. Per-test fixtures such as
 * `servers.migratedDatabase(t)` release what they made with `t.after`, when that test ends.
 */
import {
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  type SQSClient,
  SendMessageBatchCommand,
} from '@aws-sdk/client-sqs';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, type TestContext } from 'node:test';
import pg from 'pg';
import { startLocalPostgres, templateFrom, type LocalPostgres } from '../../src/embedded/postgres.js';
import { connectLocalSqs, startLocalSqs, type LocalSqs } from '../../src/embedded/sqs.js';
import { migrate } from '../../src/sink/migrate.js';
import { PgSink } from '../../src/sink/postgres.js';
import { chunks } from '../../src/source/queue.js';
import { readRejected, type RejectedRow } from '../../src/sink/rejected.js';
import { PiiKey, type KeyRing } from '../../src/transform/key.js';
import { openBody } from '../../src/transform/seal.js';
import type { SealedBox } from '../../src/transform/sealed-box.js';

export { EMULATOR_CREDENTIALS as TEST_CREDENTIALS } from '../../src/embedded/sqs.js';

/** A superuser connection string of a Postgres that test files share (set by test/run.ts). */
export const SHARED_POSTGRES_VARIABLE = 'LOGIN_ETL_TEST_POSTGRES_URL';
/**
 * Set (to 1) by test/run.ts beside SHARED_POSTGRES_VARIABLE when it started that server for the
 * run and deletes it, databases and all, when the run ends: files then leave their databases
 * behind instead of dropping them. Each DROP DATABASE forces a checkpoint, which writes out every
 * page the other files have changed meanwhile. A server named from outside is never left with them.
 */
export const SHARED_POSTGRES_DISPOSABLE_VARIABLE = 'LOGIN_ETL_TEST_POSTGRES_DISPOSABLE';
/** The endpoint of an SQS emulator that test files share (set by test/run.ts). */
export const SHARED_SQS_VARIABLE = 'LOGIN_ETL_TEST_SQS_ENDPOINT';

export interface Servers {
  readonly postgres: LocalPostgres;
  readonly sqs: LocalSqs;
  readonly sqsClient: SQSClient;
  /** A new, empty database; returns its connection string. */
  database(): Promise<string>;
  /** A new queue with a unique name; returns its URL. */
  queue(attributes?: Record<string, string>): Promise<string>;
  stop(): Promise<void>;
}

let counter = 0;
const unique = (prefix: string) => `${prefix}_${process.pid}_${(counter += 1)}`;

export interface ServerOptions {
  /**
   * A Postgres for this file alone: for tests that stop and start it, read its data directory or
   * change its configuration. Implied by `onPostgresLog`.
   */
  readonly ownPostgres?: boolean;
  /** Receives every line the Postgres server writes to its log (its stderr). */
  readonly onPostgresLog?: (line: string) => void;
}

/** The run's shared server, seen through the LocalPostgres interface; it is not this file's to stop. */
function sharedPostgres(url: string): LocalPostgres {
  const base = new URL(url);
  const notOwned = (what: string) => () =>
    Promise.reject(new Error(`the shared test Postgres cannot be ${what}: start the servers with { ownPostgres: true }`));
  return {
    url,
    port: Number(base.port),
    get dataDir(): string {
      throw new Error('the shared test Postgres has no data directory of this file: start the servers with { ownPostgres: true }');
    },
    urlFor(database) {
      const next = new URL(base);
      next.pathname = `/${database}`;
      return next.toString();
    },
    pause: notOwned('paused'),
    resume: notOwned('resumed'),
    stop: () => Promise.resolve(),
  };
}

export async function startServers(options: ServerOptions = {}): Promise<Servers> {
  const onLog = options.onPostgresLog;
  const shared = process.env[SHARED_POSTGRES_VARIABLE];
  const own = options.ownPostgres === true || onLog !== undefined || shared === undefined || shared === '';
  const sharedSqs = process.env[SHARED_SQS_VARIABLE];
  const [postgres, sqs] = await Promise.all([
    own ? startLocalPostgres({ auth: 'trust', template: templateFrom(process.env), ...(onLog === undefined ? {} : { onLog }) }) : sharedPostgres(shared),
    sharedSqs === undefined || sharedSqs === '' ? startLocalSqs() : connectLocalSqs(sharedSqs),
  ]);
  const sqsClient = sqs.client;
  const databases: string[] = [];
  return {
    postgres,
    sqs,
    sqsClient,
    async database() {
      const name = unique('test');
      await query(postgres.url, `CREATE DATABASE ${name}`);
      databases.push(name);
      return postgres.urlFor(name);
    },
    queue: (attributes) => sqs.createQueue(unique('q'), attributes),
    async stop() {
      await endQueryPools();
      if (!own && process.env[SHARED_POSTGRES_DISPOSABLE_VARIABLE] === '1') {
        await sqs.stop();
        return;
      }
      // pg's Pool.end() resolves before its connections have closed; stopping the server under
      // them would raise errors in clients no test listens to any more.
      await waitForNoClients(postgres.url, databases);
      if (!own) {
        for (const name of databases) await queryOnce(postgres.url, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      }
      await Promise.all([sqs.stop(), postgres.stop()]);
    },
  };
}

/** A migrated database of one test, and a pool over it that ends when the test does. */
export interface MigratedDatabase {
  readonly databaseUrl: string;
  readonly pool: pg.Pool;
  /** The real sink over `pool`. */
  readonly sink: PgSink;
}

/** The servers of one test file, as `useServers` gives them: started before its first test, stopped after its last. */
export interface FileServers extends Omit<Servers, 'stop'> {
  /** Resolves once the servers are running; rejects if they could not start. */
  ready(): Promise<void>;
  /**
   * A new database with every migration applied, and a pool of at most `max` connections over it
   * that is ended after test `t`. `max` has no default: each test sizes the pool for what it runs.
   */
  migratedDatabase(t: TestContext, options: { readonly max: number }): Promise<MigratedDatabase>;
}

/**
 * The servers of this test file: registers the `before` hook that starts them and the `after`
 * hook that stops them; call it once, at the file's top level. The object returned can be held
 * from the start; using it while the servers are not running is an error.
 *
 * Node starts a top-level `before` hook as soon as it is registered, without waiting for those
 * registered earlier: a `before` hook of the file's that uses the servers awaits `ready()` first.
 * Top-level `after` hooks run one after another in the order registered: one that must run while
 * the servers are still up is registered before this call.
 */
export function useServers(options: ServerOptions = {}): FileServers {
  let started: Servers | undefined;
  let markReady: () => void = () => undefined;
  let markFailed: (err: unknown) => void = () => undefined;
  const ready = new Promise<void>((resolve, reject) => {
    markReady = resolve;
    markFailed = reject;
  });
  // The before hook reports a failure to start; a file that never awaits ready() must not also
  // see it as an unhandled rejection.
  ready.catch(() => undefined);
  before(async () => {
    try {
      started = await startServers(options);
      markReady();
    } catch (err) {
      markFailed(err);
      throw err;
    }
  });
  after(async () => {
    const stopping = started;
    started = undefined;
    await stopping?.stop();
  });
  const running = (): Servers => {
    if (started === undefined) {
      throw new Error('the test servers are not running: use them in a test, or in a before hook after `await servers.ready()`');
    }
    return started;
  };
  return {
    ready: () => ready,
    get postgres() {
      return running().postgres;
    },
    get sqs() {
      return running().sqs;
    },
    get sqsClient() {
      return running().sqsClient;
    },
    database: () => running().database(),
    queue: (attributes) => running().queue(attributes),
    async migratedDatabase(t, { max }) {
      const databaseUrl = await running().database();
      const pool = new pg.Pool({ connectionString: databaseUrl, max });
      t.after(() => pool.end());
      await migrate(pool);
      return { databaseUrl, pool, sink: new PgSink(pool) };
    },
  };
}

/** Applies every migration to the database at `databaseUrl`, over a connection of its own. */
export async function migrateDatabase(databaseUrl: string): Promise<void> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  try {
    await migrate(pool);
  } finally {
    await pool.end();
  }
}

async function waitForNoClients(url: string, databases: readonly string[], timeoutMs = 5_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const [row] = await queryOnce<{ n: number }>(
      url,
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND datname = ANY($1)`,
      [databases],
    );
    if ((row?.n ?? 0) === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export function testKey(): PiiKey {
  return new PiiKey(randomBytes(32));
}

export async function sendBodies(client: SQSClient, queueUrl: string, bodies: readonly string[]): Promise<void> {
  for (const batch of chunks(bodies, 10)) {
    const response = await client.send(
      new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: batch.map((body, i) => ({ Id: String(i), MessageBody: body })) }),
    );
    if ((response.Failed ?? []).length > 0) throw new Error('test setup: send failed');
  }
}

/**
 * Like sendBodies, with up to `concurrency` SendMessageBatch calls at once; returns the message
 * id SQS gave each body, in the order of `bodies`.
 */
export async function sendBodiesForIds(client: SQSClient, queueUrl: string, bodies: readonly string[], concurrency = 8): Promise<string[]> {
  const ids: string[] = new Array<string>(bodies.length);
  const batches = chunks(bodies.map((body, index) => ({ body, index })), 10);
  let next = 0;
  const worker = async () => {
    for (let b = next++; b < batches.length; b = next++) {
      const batch = batches[b] ?? [];
      const response = await client.send(
        new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: batch.map(({ body, index }) => ({ Id: String(index), MessageBody: body })) }),
      );
      if ((response.Failed ?? []).length > 0) throw new Error(`test setup: send failed: ${JSON.stringify(response.Failed?.[0])}`);
      for (const entry of response.Successful ?? []) ids[Number(entry.Id)] = entry.MessageId ?? '';
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, batches.length) }, worker));
  assert.ok(ids.every((id) => typeof id === 'string' && id !== ''), 'test setup: a sent message has no id');
  return ids;
}

/** Visible + in flight + delayed messages. */
export async function queueDepth(client: SQSClient, queueUrl: string): Promise<number> {
  const { Attributes: a } = await client.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
    }),
  );
  return (
    Number(a?.ApproximateNumberOfMessages ?? 0) +
    Number(a?.ApproximateNumberOfMessagesNotVisible ?? 0) +
    Number(a?.ApproximateNumberOfMessagesDelayed ?? 0)
  );
}

export async function receiveRaw(client: SQSClient, queueUrl: string) {
  const { Messages } = await client.send(
    new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageSystemAttributeNames: ['All'] }),
  );
  return Messages ?? [];
}

/**
 * Pools behind `query`, one per connection string. A connection costs the server a process start
 * and its catalog caches (about 15 ms of CPU); tests call `query` hundreds of times per file, many
 * of them polling, so a connection is kept for a second after its last query. Ended by
 * `endQueryPools` (a file's servers do at their stop); idle ones never keep a process alive.
 */
const queryPools = new Map<string, pg.Pool>();

/**
 * Runs one statement (or several, without parameters) and returns the rows, on a connection
 * whose session starts clean: settings, roles, prepared statements, temporary tables and
 * advisory locks of an earlier statement are discarded (DISCARD ALL), and a connection left in a
 * transaction, or broken by a server that stopped or ended it, is closed instead of reused.
 */
export async function query<T extends pg.QueryResultRow>(databaseUrl: string, text: string, values: unknown[] = []): Promise<T[]> {
  let pool = queryPools.get(databaseUrl);
  if (pool === undefined) {
    pool = new pg.Pool({ connectionString: databaseUrl, max: 2, idleTimeoutMillis: 1_000, allowExitOnIdle: true });
    // A server stopped or a backend terminated under an idle connection: the pool drops it.
    pool.on('error', () => undefined);
    queryPools.set(databaseUrl, pool);
  }
  const client = await pool.connect();
  let reusable = false;
  try {
    const rows = (await client.query<T>(text, values)).rows;
    await client.query('DISCARD ALL');
    reusable = true;
    return rows;
  } finally {
    client.release(!reusable);
  }
}

/** Ends every pool behind `query`; a later `query` opens new ones. */
export async function endQueryPools(): Promise<void> {
  const pools = [...queryPools.values()];
  queryPools.clear();
  await Promise.all(pools.map((pool) => pool.end()));
}

/** `query` on a connection of its own, closed after it: for the server's own bookkeeping at a stop. */
async function queryOnce<T extends pg.QueryResultRow>(databaseUrl: string, text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

/** Every value of every row of every table of the pipeline and the user, as text. */
export async function dumpAllTables(databaseUrl: string): Promise<string> {
  const tables = await query<{ name: string }>(
    databaseUrl,
    `SELECT format('%I.%I', table_schema, table_name) AS name FROM information_schema.tables
      WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'`,
  );
  const parts: string[] = [];
  for (const { name } of tables) {
    const rows = await query<{ row: string }>(databaseUrl, `SELECT t::text AS row FROM ${name} t`);
    parts.push(...rows.map((r) => r.row));
  }
  return parts.join('\n');
}

/** The rows of one relation, cast to text one row a line. */
export interface RelationDump {
  /** Schema-qualified name. */
  readonly relation: string;
  readonly text: string;
}

/**
 * Every row of every table, partitioned table and materialized view of a database, in every
 * schema including pg_catalog and information_schema (shared catalogs such as pg_database and
 * pg_authid too), and of the views of pg_catalog, which show state no table holds (pg_stat_activity,
 * pg_settings, pg_prepared_statements...); each row cast to text. Other views only rearrange the
 * tables (information_schema's take seconds to read), and TOAST tables hold values already in
 * the rows that own them: both are left out. `failed` lists views that could not be read.
 *
 * bytea is written in the escape format, printable bytes as they are: text stored as bytes
 * (a body that was meant to be sealed) reads as text, where the hex format would hide it.
 */
export async function dumpEveryRelation(databaseUrl: string): Promise<{ relations: RelationDump[]; failed: string[] }> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query(`SET bytea_output = 'escape'`);
    const { rows: names } = await client.query<{ name: string; kind: string }>(
      `SELECT format('%I.%I', n.nspname, c.relname) AS name, c.relkind::text AS kind
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'm') OR (c.relkind = 'v' AND n.nspname = 'pg_catalog')
        ORDER BY 1`,
    );
    const relations: RelationDump[] = [];
    const failed: string[] = [];
    for (const { name, kind } of names) {
      try {
        const { rows } = await client.query<{ row: string }>(`SELECT t::text AS row FROM ${name} t`);
        relations.push({ relation: name, text: rows.map((r) => r.row).join('\n') });
      } catch (err) {
        // Some catalog views cannot be read in every state (a WAL receiver that is not running).
        if (kind !== 'v') throw err;
        failed.push(`${name}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    return { relations, failed };
  } finally {
    await client.end();
  }
}

/** Every rejected message of a database, with its sealed body. */
export async function storedRejections(databaseUrl: string): Promise<RejectedRow[]> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  try {
    return await readRejected(pool, { limit: 1_000_000 }, true);
  } finally {
    await pool.end();
  }
}

/** The original body of a stored rejection, opened with `ring`; fails the test when it does not open. */
export function openedBody(row: RejectedRow, ring: KeyRing, box?: SealedBox): string {
  assert.ok(row.sealed !== undefined, `rejected message ${row.messageId} has no sealed body`);
  const opened = openBody(row.messageId, row.sealed, row.token, ring, box);
  assert.ok(opened.kind === 'opened', `rejected message ${row.messageId} does not open: ${opened.kind === 'refused' ? opened.reason : ''}`);
  return opened.body;
}
