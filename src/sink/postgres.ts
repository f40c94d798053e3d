/**
 * The Postgres side: a connection pool and the sink that commits batches through it. What a
 * failure means is decided in src/failure.ts; a SinkError keeps node-postgres's error, with its
 * SQLSTATE, as its cause.
 */
import pg from 'pg';
import { SinkError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { Outcome } from '../transform/transform.js';
import { claimForwarding, recordForwarding, releaseForwardingClaims, type ForwardingRecord } from './record-forwarding.js';
import { writeBatch, type WriteResult } from './write-batch.js';

export interface Sink {
  write(outcomes: readonly Outcome[]): Promise<WriteResult>;
  /** Claims committed rejections for forwarding; returns the ids claimed by this call (see claimForwarding). */
  claimForwarding(messageIds: readonly string[], claimant: string): Promise<string[]>;
  /** Gives back claims of rejections known not to have been sent (see releaseForwardingClaims). */
  releaseForwardingClaims(messageIds: readonly string[], claimant: string): Promise<void>;
  /** Records which claimed rejections reached the dead-letter queue, and which never can. */
  recordForwarding(record: ForwardingRecord): Promise<void>;
}

/** How much longer than the server's statement timeout the client waits for an answer. */
const CLIENT_MARGIN_MS = 5_000;

/**
 * A pool whose every statement has a deadline: Postgres cancels it after `statementTimeoutMs`
 * (statement_timeout, SQLSTATE 57014), and the client gives up `CLIENT_MARGIN_MS` later in case
 * no answer can come at all (a connection gone silent).
 */
export function createPool(databaseUrl: string, options: { max: number; log: Logger; statementTimeoutMs: number }): pg.Pool {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: options.max,
    application_name: 'login-etl',
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    statement_timeout: options.statementTimeoutMs,
    query_timeout: options.statementTimeoutMs + CLIENT_MARGIN_MS,
  });
  // A client losing its connection (a server restart) must not crash the process: an idle one
  // is reported by the pool; one checked out between two queries emits on itself, with no
  // listener of the pool's, and its next query fails and is classified like any other.
  pool.on('error', (err) => options.log.warn({ err: err.message }, 'idle Postgres connection lost'));
  pool.on('connect', (client) => {
    client.on('error', (err) => options.log.warn({ err: err.message }, 'Postgres connection lost'));
  });
  return pool;
}

/** A connection's server process id, which node-postgres keeps but does not type. */
function backendPid(client: pg.Client): number | undefined {
  const pid = (client as unknown as { processID?: unknown }).processID;
  return typeof pid === 'number' ? pid : undefined;
}

/**
 * Cancels the statements a pool's connections are running, with pg_cancel_backend from a
 * connection of its own (a statement waiting on a lock holds its connection, and the pool may
 * have none to spare). The statements fail with SQLSTATE 57014; the connections stay usable.
 */
export function statementCanceller(pool: pg.Pool, databaseUrl: string, options: { timeoutMs: number }): () => Promise<void> {
  const clients = new Set<pg.Client>();
  pool.on('connect', (client) => clients.add(client as pg.Client));
  pool.on('remove', (client) => clients.delete(client as pg.Client));
  return async () => {
    const pids = [...clients].flatMap((client) => backendPid(client) ?? []);
    if (pids.length === 0) return;
    const canceller = new pg.Client({
      connectionString: databaseUrl,
      application_name: 'login-etl cancel',
      connectionTimeoutMillis: options.timeoutMs,
      query_timeout: options.timeoutMs,
    });
    try {
      await canceller.connect();
      await canceller.query('SELECT pg_cancel_backend(pid) FROM unnest($1::int[]) AS pid', [pids]);
    } finally {
      await canceller.end().catch(() => undefined);
    }
  };
}

export class PgSink implements Sink {
  constructor(private readonly pool: pg.Pool) {}

  async write(outcomes: readonly Outcome[]): Promise<WriteResult> {
    try {
      return await writeBatch(this.pool, outcomes);
    } catch (err) {
      throw sinkError('Postgres refused the write', err);
    }
  }

  async claimForwarding(messageIds: readonly string[], claimant: string): Promise<string[]> {
    try {
      return await claimForwarding(this.pool, messageIds, claimant);
    } catch (err) {
      throw sinkError('Postgres could not claim rejections for the dead-letter queue', err);
    }
  }

  async releaseForwardingClaims(messageIds: readonly string[], claimant: string): Promise<void> {
    try {
      await releaseForwardingClaims(this.pool, messageIds, claimant);
    } catch (err) {
      throw sinkError('Postgres could not give back claims on rejections for the dead-letter queue', err);
    }
  }

  async recordForwarding(record: ForwardingRecord): Promise<void> {
    try {
      await recordForwarding(this.pool, record);
    } catch (err) {
      throw sinkError('Postgres could not record the forwarding to the dead-letter queue', err);
    }
  }
}

function sinkError(what: string, err: unknown): SinkError {
  const code = (err as { code?: unknown }).code;
  // The message, not the detail: Postgres puts the failing row's values in `detail`. The
  // values written are masked or validated already, but the detail is still left out.
  const message = err instanceof Error ? err.message : String(err);
  // A code that is no SQLSTATE is the network's (ECONNREFUSED): the database was not reached.
  if (typeof code === 'string' && !/^[0-9A-Z]{5}$/.test(code)) return new SinkError(`Postgres (DATABASE_URL) could not be reached: ${message}`, { cause: err });
  const text = typeof code === 'string' ? `${message} (SQLSTATE ${code})` : message;
  return new SinkError(`${what}: ${text}`, { cause: err });
}
