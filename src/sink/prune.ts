/**
 * Ledger retention. A ledger row only matters while SQS could still redeliver its message, and
 * SQS drops every message after the queue's retention period (at most 14 days). Older rows are
 * deleted in small batches, by one instance at a time, so pruning never holds long locks or
 * competes with the pipeline's writes.
 */
import type pg from 'pg';

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
  const client = await pool.connect();
  try {
    const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [PRUNE_LOCK_ID]);
    if (!rows[0]?.locked) return null;
    try {
      let total = 0;
      for (;;) {
        const { rowCount } = await client.query(DELETE_BATCH, [options.olderThanSeconds, batchSize]);
        total += rowCount ?? 0;
        if ((rowCount ?? 0) < batchSize || options.signal?.aborted) return total;
        await new Promise((resolve) => setTimeout(resolve, options.pauseMs ?? 50));
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [PRUNE_LOCK_ID]);
    }
  } finally {
    client.release();
  }
}
