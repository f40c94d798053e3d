/**
 * Ledger retention. A ledger row only matters while SQS could still redeliver its message, and
 * SQS drops every message after the queue's retention period (at most 14 days). Older rows are
 * deleted in small batches, each in its own short transaction and by one instance at a time, so
 * pruning never holds long locks or competes with the pipeline's writes.
 */
import type pg from 'pg';
import { withTransaction } from './transaction.js';

/** Arbitrary but fixed: the advisory lock the pruning instance holds. */
const PRUNE_LOCK_ID = 7_221_904_312;

const DELETE_BATCH = `
DELETE FROM login_etl.processed_messages
 WHERE message_id IN (
       SELECT message_id FROM login_etl.processed_messages
        WHERE processed_at < now() - make_interval(secs => $1)
        LIMIT $2)`;

export interface PruneOptions {
  readonly olderThanSeconds: number;
  readonly batchSize?: number;
  /** Pause between batches, so pruning a large backlog yields to the pipeline. */
  readonly pauseMs?: number;
  readonly signal?: AbortSignal;
}

/** Deletes ledger rows older than the retention; resolves with how many, or null if another instance is pruning. */
export async function pruneLedger(pool: pg.Pool, options: PruneOptions): Promise<number | null> {
  const batchSize = options.batchSize ?? 5_000;
  let total = 0;
  for (let first = true; ; first = false) {
    const deleted = await pruneBatch(pool, options.olderThanSeconds, batchSize);
    if (deleted === null) return first ? null : total;
    total += deleted;
    if (deleted < batchSize || options.signal?.aborted) return total;
    await new Promise((resolve) => setTimeout(resolve, options.pauseMs ?? 50));
  }
}

/**
 * One batch in a transaction of its own, under a transaction-level advisory lock: no lock outlives
 * its transaction, so pruning also works behind a pooler in transaction mode (PgBouncer).
 */
async function pruneBatch(pool: pg.Pool, olderThanSeconds: number, batchSize: number): Promise<number | null> {
  return await withTransaction(pool, async (client) => {
    const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_xact_lock($1) AS locked', [PRUNE_LOCK_ID]);
    if (!rows[0]?.locked) return null;
    const { rowCount } = await client.query(DELETE_BATCH, [olderThanSeconds, batchSize]);
    return rowCount ?? 0;
  });
}
