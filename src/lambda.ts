/**
 * AWS Lambda entry point for an SQS event source mapping, as an alternative to `run`.
 *
 * The same transform, masking and sink as `run`: each record becomes a row or a rejection, and
 * the batch statement records its MessageId in the ledger, so a record delivered again (the
 * mapping retries, or a second mapping) is skipped. The handler never deletes messages: the
 * mapping deletes every record not listed in `batchItemFailures`, which is why the mapping must
 * have `FunctionResponseTypes: [ReportBatchItemFailures]`. Records whose write failed for a
 * transient or broken reason (Postgres down, connections exhausted, a privilege revoked) are
 * listed, and come back later; rows Postgres refuses for their content are rejected with its
 * reason, by the same commit algorithm as `run` (src/commit.ts).
 *
 * With LOGIN_ETL_DEAD_LETTER_QUEUE_URL set, every rejection is forwarded there once, after the
 * commit that recorded it, as `run` forwards them; a record whose rejection could not be
 * forwarded yet is listed as failed, comes back, and is forwarded then (its row or rejection is
 * not written twice: the ledger skips it).
 *
 * Configuration comes from the function's environment, parsed once per container with the
 * same rules as `run` (DATABASE_URL; PII_KEY, PII_KEY_FILE, PII_KEYS or PII_KEYS_FILE;
 * LOGIN_ETL_MASK_MODE; LOG_LEVEL; LOGIN_ETL_STATEMENT_TIMEOUT_SECONDS; for the dead-letter queue
 * LOGIN_ETL_DEAD_LETTER_QUEUE_URL, AWS_REGION, AWS_ENDPOINT_URL_SQS and
 * LOGIN_ETL_SQS_TIMEOUT_SECONDS). The pool, masker, clients and logger are cached across
 * invocations.
 */
import type pg from 'pg';
import {
  assertWriterKeys,
  collectSettings,
  KEY_SETTINGS,
  optionalSetting,
  requiredSetting,
  requireKeyRing,
  type SettingName,
} from './config.js';
import { BatchCommit } from './commit.js';
import { ConfigError, describeError } from './errors.js';
import { classify, type Failure } from './failure.js';
import { createLogger, type Logger } from './observability/logger.js';
import { migrate } from './sink/migrate.js';
import { sealLegacyBodies } from './sink/rejected.js';
import { createPool, PgSink, type Sink } from './sink/postgres.js';
import { chunks, queueMessage, type DeadLetterQueue } from './source/queue.js';
import { createMasker, type Masker } from './transform/mask.js';
import { transform } from './transform/transform.js';

/** The parts of an SQS record the handler reads; attribute values arrive as strings. */
export interface SqsRecord {
  readonly messageId: string;
  readonly receiptHandle: string;
  readonly body: string;
  readonly attributes: {
    readonly SentTimestamp?: string;
    readonly ApproximateReceiveCount?: string;
    readonly [name: string]: string | undefined;
  };
  readonly eventSource?: string;
  readonly eventSourceARN?: string;
}

export interface SqsEvent {
  readonly Records: readonly SqsRecord[];
}

export interface SqsBatchResponse {
  batchItemFailures: { itemIdentifier: string }[];
}

export interface LambdaHandler {
  (event: SqsEvent): Promise<SqsBatchResponse>;
  /** Ends the cached pool; for tests and for a Lambda extension's shutdown. */
  close(): Promise<void>;
}

/** The settings a function reads; the queue is the mapping's business, not the function's. */
const LAMBDA_SETTINGS = [
  'databaseUrl',
  ...KEY_SETTINGS,
  'maskMode',
  'logLevel',
  'statementTimeoutSeconds',
  'deadLetterQueueUrl',
  'region',
  'sqsEndpoint',
  'sqsTimeoutSeconds',
] as const satisfies readonly SettingName[];

/** Rows per statement: a mapping can hand over up to 10,000 records with a batching window. */
const STATEMENT_ROWS = 500;

interface Context {
  readonly pool: pg.Pool;
  readonly sink: Sink;
  readonly masker: Masker;
  readonly log: Logger;
  readonly deadLetters: DeadLetterQueue | undefined;
  close(): Promise<void>;
}

/** Reads and validates the function's settings; a ConfigError names the bad one. */
function parseLambdaConfig(env: NodeJS.ProcessEnv) {
  const raw = collectSettings(LAMBDA_SETTINGS, {}, env);
  const databaseUrl = requiredSetting('databaseUrl', raw);
  const maskMode = requiredSetting('maskMode', raw);
  const keys = requireKeyRing(raw, env);
  assertWriterKeys(keys, maskMode);
  return {
    databaseUrl,
    maskMode,
    keys,
    logLevel: requiredSetting('logLevel', raw),
    statementTimeoutSeconds: requiredSetting('statementTimeoutSeconds', raw),
    deadLetterQueueUrl: optionalSetting('deadLetterQueueUrl', raw),
    region: optionalSetting('region', raw),
    sqsEndpoint: optionalSetting('sqsEndpoint', raw),
    sqsTimeoutSeconds: requiredSetting('sqsTimeoutSeconds', raw),
  };
}

/** The dead-letter queue through the SDK's client, as `run` reaches it; the SDK is loaded only when one is set. */
async function deadLetterQueue(config: ReturnType<typeof parseLambdaConfig>, log: Logger): Promise<{ queue: DeadLetterQueue; close(): void } | undefined> {
  const queueUrl = config.deadLetterQueueUrl;
  if (queueUrl === undefined) return undefined;
  const { createSqsClient, SqsDeadLetterQueue } = await import('./source/sqs.js');
  const client = createSqsClient({ queueUrl, region: config.region, endpoint: config.sqsEndpoint }, { maxSockets: 4, tuning: 'pipeline', log });
  return { queue: new SqsDeadLetterQueue(client, queueUrl, { timeoutMs: config.sqsTimeoutSeconds * 1000 }), close: () => client.destroy() };
}

async function createContext(env: NodeJS.ProcessEnv): Promise<Context> {
  const config = parseLambdaConfig(env);
  const log = createLogger(config.logLevel);
  for (const warning of config.keys.warnings) log.warn(warning);
  // One invocation at a time per container, and chunks are written one after another.
  const pool = createPool(config.databaseUrl, { max: 1, log, statementTimeoutMs: config.statementTimeoutSeconds * 1000 });
  try {
    const { applied } = await migrate(pool);
    if (applied.length > 0) log.info({ applied }, 'migrations applied');
    const masker = await createMasker(config.maskMode, config.keys.ring.active);
    await sealLegacyBodies(pool, masker.bodies, log);
    const deadLetters = await deadLetterQueue(config, log);
    return {
      pool,
      sink: new PgSink(pool),
      masker,
      log,
      deadLetters: deadLetters?.queue,
      async close() {
        deadLetters?.close();
        await pool.end();
      },
    };
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
}

/** A handler with its own cached context, built from `env` on first use. */
export function createHandler(env: () => NodeJS.ProcessEnv): LambdaHandler {
  let context: Promise<Context> | undefined;
  const handler = async (event: SqsEvent): Promise<SqsBatchResponse> => {
    const records = event.Records;
    const everything = () => ({ batchItemFailures: records.map((r) => ({ itemIdentifier: r.messageId })) });
    let ready: Context;
    try {
      context ??= createContext(env());
      ready = await context;
    } catch (err) {
      context = undefined;
      // A bad setting is a broken deployment: fail the invocation so it shows as an error.
      if (err instanceof ConfigError) throw err;
      createLogger('error').error({ err: describeError(err), records: records.length }, 'could not start; every record goes back to the queue');
      return everything();
    }
    const tally = { written: 0, rejected: 0, duplicates: 0 };
    const failed: string[] = [];
    let failure: Failure | undefined;
    for (const group of chunks(records, STATEMENT_ROWS)) {
      // After one chunk failed, the next would too: they go back to the queue untried.
      if (failure !== undefined) {
        failed.push(...group.map((r) => r.messageId));
        continue;
      }
      const outcomes = group.map((record) => transform(queueMessage(record.messageId, record.receiptHandle, record.body, record.attributes), ready.masker));
      for (const outcome of outcomes) {
        if (outcome.kind === 'rejected') ready.log.warn({ messageId: outcome.message.messageId, reason: outcome.reason }, 'message rejected');
      }
      // The commit algorithm `run` uses: rows Postgres refuses are split out and rejected.
      const commit = new BatchCommit(outcomes, ready);
      try {
        await commit.attempt();
      } catch (err) {
        failure = classify(err, 'postgres');
        const uncommitted = commit.uncommitted.map((o) => o.message.messageId);
        const log = failure.kind === 'broken' ? ready.log.error.bind(ready.log) : ready.log.warn.bind(ready.log);
        // Committed rejections not yet forwarded go back too, with their claims, so that the next
        // delivery forwards them; their rows are skipped by the ledger.
        const unforwarded = commit.unforwarded;
        await commit.releaseClaims().catch(() => undefined);
        log({ dependency: failure.dependency, kind: failure.kind, err: failure.reason, records: uncommitted.length + unforwarded.length }, 'write failed; the records go back to the queue');
        failed.push(...uncommitted, ...unforwarded);
      }
      tally.written += commit.tally.written;
      tally.rejected += commit.tally.rejected;
      tally.duplicates += commit.tally.duplicates;
    }
    ready.log.info({ records: records.length, ...tally, failed: failed.length }, 'batch committed');
    return { batchItemFailures: failed.map((itemIdentifier) => ({ itemIdentifier })) };
  };
  return Object.assign(handler, {
    async close() {
      const current = context;
      context = undefined;
      if (current !== undefined) await (await current.catch(() => undefined))?.close();
    },
  });
}

/** The function's handler: `dist/src/lambda.handler`. */
export const handler: LambdaHandler = createHandler(() => process.env);
