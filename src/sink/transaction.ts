/**
 * Every transaction login-etl opens: committed when `work` resolves, rolled back when it throws
 * (or always, for work that must leave nothing behind), and a pooled connection handed back
 * either way. No other module writes BEGIN, COMMIT or ROLLBACK.
 */
import pg from 'pg';

export interface TransactionOptions {
  /** READ ONLY: Postgres refuses every write, and SET TRANSACTION READ WRITE after the first statement. */
  readonly readOnly?: boolean;
  /** READ ONLY, with one snapshot for every statement (REPEATABLE READ): reads that agree. */
  readonly snapshotReadOnly?: boolean;
  /** Roll back even when `work` resolves: for reads that must not be able to change anything. */
  readonly rollback?: boolean;
}

function beginStatement(options: TransactionOptions): string {
  if (options.snapshotReadOnly === true) return 'BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY';
  return options.readOnly === true ? 'BEGIN READ ONLY' : 'BEGIN';
}

/**
 * Runs `work` in one transaction on `connection`: a connection taken from a pool (and released),
 * or a client the caller owns (and closes).
 */
export async function withTransaction<T>(
  connection: pg.Pool | pg.ClientBase,
  work: (client: pg.ClientBase) => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  const pooled = connection instanceof pg.Pool ? await connection.connect() : undefined;
  const client = pooled ?? (connection as pg.ClientBase);
  try {
    await client.query(beginStatement(options));
    const result = await work(client);
    await client.query(options.rollback === true ? 'ROLLBACK' : 'COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    pooled?.release();
  }
}
