/**
 * Ledger retention: rows older than the queue's retention are pruned, younger ones never, and
 * only one instance prunes at a time.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { pruneLedger } from '../../src/sink/prune.js';
import { query, useServers } from '../helpers/servers.js';

const servers = useServers();

const DAY = 86_400;

test('pruning deletes ledger rows older than the retention, in batches, and keeps the rest', async (t) => {
  const { databaseUrl, pool } = await servers.migratedDatabase(t, { max: 3 });
  await query(
    databaseUrl,
    `INSERT INTO login_etl.processed_messages (message_id, outcome, processed_at)
     SELECT 'old-' || i, 'written', now() - interval '15 days' FROM generate_series(1, 12000) i
     UNION ALL
     SELECT 'edge-' || i, 'written', now() - interval '13 days 23 hours' FROM generate_series(1, 50) i
     UNION ALL
     SELECT 'new-' || i, 'rejected', now() - interval '1 hour' FROM generate_series(1, 500) i`,
  );

  const pruned = await pruneLedger(pool, { olderThanSeconds: 14 * DAY, batchSize: 5_000, pauseMs: 1 });

  assert.equal(pruned, 12_000);
  const left = await query<{ prefix: string; n: number }>(
    databaseUrl,
    `SELECT split_part(message_id, '-', 1) AS prefix, count(*)::int AS n FROM login_etl.processed_messages GROUP BY 1 ORDER BY 1`,
  );
  assert.deepEqual(left, [
    { prefix: 'edge', n: 50 },
    { prefix: 'new', n: 500 },
  ]);
  assert.equal(await pruneLedger(pool, { olderThanSeconds: 14 * DAY }), 0);
});

test('while one instance prunes, another skips instead of competing', async (t) => {
  const { databaseUrl, pool } = await servers.migratedDatabase(t, { max: 3 });
  const holder = new pg.Client({ connectionString: databaseUrl });
  t.after(() => holder.end());
  await holder.connect();
  // Another instance in the middle of a batch: its transaction holds the pruning lock.
  await holder.query('BEGIN');
  await holder.query('SELECT pg_advisory_xact_lock(7221904312)');

  assert.equal(await pruneLedger(pool, { olderThanSeconds: DAY }), null);

  await holder.query('COMMIT');
  assert.equal(await pruneLedger(pool, { olderThanSeconds: DAY }), 0);
  const [left] = await query<{ n: number }>(
    databaseUrl,
    `SELECT count(*)::int AS n FROM pg_locks
      WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
  );
  assert.equal(left?.n, 0, 'no advisory lock outlives a pruning batch');
});
