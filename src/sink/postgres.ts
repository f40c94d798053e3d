/**
 * The Postgres side: a connection pool and the sink that commits batches through it.
 */
import pg from 'pg';
import { SinkError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { Outcome } from '../transform/transform.js';
import { writeBatch, type WriteResult } from './write-batch.js';

export interface Sink {
  write(outcomes: readonly Outcome[]): Promise<WriteResult>;
}

export function createPool(databaseUrl: string, options: { max: number; log: Logger }): pg.Pool {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: options.max,
    application_name: 'login-etl',
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
  });
  // An idle client losing its connection (server restart) must not crash the process.
  pool.on('error', (err) => options.log.warn({ err: err.message }, 'idle Postgres connection lost'));
  return pool;
}

/**
 * SQLSTATE classes and codes after which the same statement can succeed: connection failures,
 * server shutdown, resource exhaustion, serialization failures and deadlocks.
 */
const RETRYABLE_SQLSTATE = /^(08|53|57P0[1-3]|40001|40P01|55P03)/;
const RETRYABLE_NETWORK = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH']);

export function isRetryablePgError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') return RETRYABLE_SQLSTATE.test(code) || RETRYABLE_NETWORK.has(code);
  // node-postgres reports a dropped connection or a pool timeout without a code.
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(err.message);
}

export class PgSink implements Sink {
  constructor(private readonly pool: pg.Pool) {}

  async write(outcomes: readonly Outcome[]): Promise<WriteResult> {
    try {
      return await writeBatch(this.pool, outcomes);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      // The message, not the detail: Postgres puts the failing row's values in `detail`. The
      // values written are masked or validated already, but the detail is still left out.
      const message = err instanceof Error ? err.message : String(err);
      const text = typeof code === 'string' ? `${message} (SQLSTATE ${code})` : message;
      throw new SinkError(`Postgres refused the write: ${text}`, { cause: err, retryable: isRetryablePgError(err) });
    }
  }
}
