/**
 * One transaction on a pooled connection: committed when `work` resolves, rolled back when it
 * throws, and the connection handed back either way.
 */
import type pg from 'pg';

export interface TransactionOptions {
  /** READ ONLY, with one snapshot for every statement (REPEATABLE READ): reads that agree. */
  readonly snapshotReadOnly?: boolean;
}

export async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query(options.snapshotReadOnly === true ? 'BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY' : 'BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
