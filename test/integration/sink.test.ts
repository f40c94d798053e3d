/**
 * The sink's one statement against a real Postgres: every value arrives exactly as the
 * transform produced it, and ids already in the ledger are skipped.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { migrate } from '../../src/sink/migrate.js';
import { PgSink } from '../../src/sink/postgres.js';
import type { Outcome } from '../../src/transform/transform.js';
import { queueMessage } from '../helpers/fixtures.js';
import { query, startServers, type Servers } from '../helpers/servers.js';

let servers: Servers;
before(async () => {
  servers = await startServers();
});
after(async () => {
  await servers?.stop();
});

describe('PgSink.write', () => {
  test('stores each column as given, text with quotes, escapes and astral characters included', async () => {
    const databaseUrl = await servers.database();
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
    try {
      await migrate(pool);
      const sink = new PgSink(pool);
      const sentMs = Date.UTC(2024, 6, 1, 12, 34, 56, 789);
      const full: Outcome = {
        kind: 'accepted',
        message: queueMessage('{}', { messageId: 'full' }),
        row: {
          user_id: 'über "quoted" \\ back\\slash, {comma} 😀',
          device_type: 'android',
          masked_ip: 'hmac:k1:abc',
          masked_device_id: 'hmac:k1:def',
          locale: 'RU',
          app_version: 20300,
          create_date: '2024-01-31',
        },
      };
      const sparse: Outcome = {
        kind: 'accepted',
        message: queueMessage('{}', { messageId: 'sparse' }),
        row: { user_id: 'u', device_type: null, masked_ip: null, masked_device_id: null, locale: null, app_version: null, create_date: null },
      };
      const rejected: Outcome = {
        kind: 'rejected',
        message: queueMessage('x', { messageId: 'bad', sentTimestampMs: sentMs, receiveCount: 7 }),
        reason: 'user_id is required; "quoted" reason',
        maskedBody: '{"note":"a \\u0000 escape, a \\"quote\\" and 😀"}',
      };
      const unsent: Outcome = { ...rejected, message: queueMessage('y', { messageId: 'unsent', sentTimestampMs: undefined }) };

      assert.deepEqual(await sink.write([full, sparse, rejected, unsent]), { written: 2, rejected: 2, duplicates: 0 });

      const rows = await query(
        databaseUrl,
        `SELECT user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date::text AS create_date
           FROM user_logins ORDER BY user_id DESC`,
      );
      assert.deepEqual(rows, [full.row, sparse.row]);
      const stored = await query<{ message_id: string; reason: string; body: string; sent_ms: string | null; receive_count: number }>(
        databaseUrl,
        `SELECT message_id, reason, body, (extract(epoch FROM sent_at) * 1000)::bigint::text AS sent_ms, receive_count
           FROM login_etl.rejected_messages ORDER BY message_id`,
      );
      assert.deepEqual(stored, [
        { message_id: 'bad', reason: rejected.reason, body: rejected.maskedBody, sent_ms: String(sentMs), receive_count: 7 },
        { message_id: 'unsent', reason: rejected.reason, body: rejected.maskedBody, sent_ms: null, receive_count: 1 },
      ]);

      assert.deepEqual(await sink.write([full, rejected]), { written: 0, rejected: 0, duplicates: 2 }, 'ids in the ledger are skipped');
      const [counts] = await query<{ logins: number; rejections: number }>(
        databaseUrl,
        'SELECT (SELECT count(*) FROM user_logins)::int AS logins, (SELECT count(*) FROM login_etl.rejected_messages)::int AS rejections',
      );
      assert.deepEqual(counts, { logins: 2, rejections: 2 });
    } finally {
      await pool.end();
    }
  });
});
