/**
 * Real servers for integration tests, started by the suite itself: an embedded Postgres and the
 * fauxqs SQS emulator, one pair per test file, with a fresh database and queue per test.
 */
import {
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  type SQSClient,
  SendMessageBatchCommand,
} from '@aws-sdk/client-sqs';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { startLocalPostgres, type LocalPostgres } from '../../src/embedded/postgres.js';
import { startLocalSqs, type LocalSqs } from '../../src/embedded/sqs.js';
import { chunks } from '../../src/source/sqs.js';
import { readRejected, type RejectedRow } from '../../src/sink/rejected.js';
import { PiiKey, type KeyRing } from '../../src/transform/key.js';
import { openBody } from '../../src/transform/seal.js';
import type { SealedBox } from '../../src/transform/sealed-box.js';

export { EMULATOR_CREDENTIALS as TEST_CREDENTIALS } from '../../src/embedded/sqs.js';

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

export async function startServers(): Promise<Servers> {
  const [postgres, sqs] = await Promise.all([startLocalPostgres(), startLocalSqs()]);
  const sqsClient = sqs.client;
  return {
    postgres,
    sqs,
    sqsClient,
    async database() {
      const name = unique('test');
      const admin = new pg.Client({ connectionString: postgres.url });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${name}`);
      await admin.end();
      return postgres.urlFor(name);
    },
    queue: (attributes) => sqs.createQueue(unique('q'), attributes),
    async stop() {
      // pg's Pool.end() resolves before its connections have closed; stopping the server under
      // them would raise errors in clients no test listens to any more.
      await waitForNoClients(postgres.url);
      await Promise.all([sqs.stop(), postgres.stop()]);
    },
  };
}

async function waitForNoClients(url: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const [row] = await query<{ n: number }>(
      url,
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`,
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

export async function query<T extends pg.QueryResultRow>(databaseUrl: string, text: string, values: unknown[] = []): Promise<T[]> {
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
  const opened = openBody(row.messageId, row.sealed, ring, box);
  assert.ok(opened.kind === 'opened', `rejected message ${row.messageId} does not open: ${opened.kind === 'refused' ? opened.reason : ''}`);
  return opened.body;
}
