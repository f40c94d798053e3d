/**
 * The sink's one statement against a real Postgres: every value arrives exactly as the
 * transform produced it, and ids already in the ledger are skipped.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import type { Logger } from '../../src/observability/logger.js';
import { createPool, PgSink } from '../../src/sink/postgres.js';
import { readRejected } from '../../src/sink/rejected.js';
import { writeBatch } from '../../src/sink/write-batch.js';
import { HmacMasker } from '../../src/transform/mask.js';
import { transform, type Outcome } from '../../src/transform/transform.js';
import { queueMessage, shapeFields } from '../helpers/fixtures.js';
import { query, testKey, useServers } from '../helpers/servers.js';

const servers = useServers();

describe('PgSink.write', () => {
  test('stores each column as given, text with quotes, escapes and astral characters included', async (t) => {
    const { databaseUrl, pool, sink } = await servers.migratedDatabase(t, { max: 2 });
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
      bytes: 1_048_576,
      token: 'body:k1:tok',
      shape: { json: 'object', fields: shapeFields({ user_id: { type: 'string', length: 9, value: 'über "q" 😀' } }), otherKeys: 3 },
      sealed: { scheme: 'box', keyId: 'k1', sealed: Uint8Array.from([0, 1, 2, 255, 0]) },
    };
    const unsent: Outcome = { ...rejected, message: queueMessage('y', { messageId: 'unsent', sentTimestampMs: undefined }) };

    const result = await sink.write([full, sparse, rejected, unsent]);
    const forward = [...result.forward].sort((a, b) => a.messageId.localeCompare(b.messageId));
    assert.deepEqual({ ...result, forward }, {
      written: 2,
      rejected: 2,
      duplicates: 0,
      forward: [
        { messageId: 'bad', reason: 'user_id is required; "quoted" reason' },
        { messageId: 'unsent', reason: 'user_id is required; "quoted" reason' },
      ],
    });

    const rows = await query(
      databaseUrl,
      `SELECT user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date::text AS create_date
         FROM user_logins ORDER BY user_id DESC`,
    );
    assert.deepEqual(rows, [full.row, sparse.row]);
    const stored = await readRejected(pool, { limit: 10 }, true);
    const expected = (messageId: string, sentAt: Date | null, receiveCount: number) => ({
      messageId,
      reason: rejected.reason,
      rejectedAt: stored[0]?.rejectedAt,
      sentAt,
      receiveCount,
      bytes: rejected.bytes,
      token: rejected.token,
      shape: rejected.shape,
      replayedAt: null,
      deadLetter: 'none' as const,
      keyId: 'k1',
      sealed: { scheme: 'box', keyId: 'k1', sealed: Buffer.from(rejected.sealed.sealed) },
    });
    assert.deepEqual(
      stored.sort((a, b) => a.messageId.localeCompare(b.messageId)).map((row) => ({ ...row, rejectedAt: stored[0]?.rejectedAt })),
      [expected('bad', new Date(sentMs), 7), expected('unsent', null, 1)],
    );
    const [legacy] = await query<{ legacy: number }>(databaseUrl, 'SELECT count(legacy_body)::int AS legacy FROM login_etl.rejected_messages');
    assert.equal(legacy?.legacy, 0);

    assert.deepEqual(
      await sink.write([full, rejected]),
      { written: 0, rejected: 0, duplicates: 2, forward: [{ messageId: 'bad', reason: rejected.reason }] },
      'ids in the ledger are skipped; a committed rejection not yet forwarded is reported again',
    );
    await sink.recordForwarding({ forwarded: ['bad'], refused: [{ messageId: 'unsent', reason: 'InvalidMessageContents: refused' }] });
    assert.deepEqual(
      await sink.write([rejected, unsent]),
      { written: 0, rejected: 0, duplicates: 2, forward: [] },
      'once forwarded, or refused for good, a redelivered rejection is not reported for forwarding',
    );
    const forwarding = await query<{ message_id: string; forwarded: boolean; forward_error: string | null }>(
      databaseUrl,
      'SELECT message_id, forwarded_at IS NOT NULL AS forwarded, forward_error FROM login_etl.rejected_messages ORDER BY message_id',
    );
    assert.deepEqual(forwarding, [
      { message_id: 'bad', forwarded: true, forward_error: null },
      { message_id: 'unsent', forwarded: false, forward_error: 'InvalidMessageContents: refused' },
    ]);
    const [counts] = await query<{ logins: number; rejections: number }>(
      databaseUrl,
      'SELECT (SELECT count(*) FROM user_logins)::int AS logins, (SELECT count(*) FROM login_etl.rejected_messages)::int AS rejections',
    );
    assert.deepEqual(counts, { logins: 2, rejections: 2 });
  });

  test('a redelivered rejection committed by another transaction while this write waited for it is still reported for forwarding', { timeout: 30_000 }, async (t) => {
    // Two instances hold the same message (its visibility lapsed during a slow write). The first
    // records the rejection and dies before forwarding it (or its backend commits after its
    // client died); the second's insert into the ledger waits for the first's, then finds the id
    // taken. The rejection must still come back for forwarding, or nobody ever forwards it.
    const { databaseUrl, pool } = await servers.migratedDatabase(t, { max: 3 });
    const first = await pool.connect();
    try {
      const rejection = transform(queueMessage('not json', { messageId: 'raced' }), new HmacMasker(testKey()));
      await first.query('BEGIN');
      const firstResult = await writeBatch(first, [rejection]);
      assert.deepEqual(firstResult.forward.map((f) => f.messageId), ['raced']);

      const second = new PgSink(pool).write([rejection]);
      for (;;) {
        const [waiting] = await query<{ n: number }>(databaseUrl, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'`);
        if ((waiting?.n ?? 0) > 0) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await first.query('COMMIT');
      const secondResult = await second;

      assert.deepEqual([secondResult.rejected, secondResult.duplicates], [0, 1]);
      assert.deepEqual(secondResult.forward.map((f) => f.messageId), ['raced'], 'the rejection the first writer committed is still to be forwarded');
    } finally {
      first.release();
    }
  });
});


describe('forwarding claims', () => {
  test('a claimed rejection is sent by the one writer whose claim took, and no redelivery reports it again, even unconfirmed', async (t) => {
    const { databaseUrl, sink: one } = await servers.migratedDatabase(t, { max: 2 });
    const other = new pg.Pool({ connectionString: databaseUrl, max: 2 });
    t.after(() => other.end());
    const two = new PgSink(other);
    const masker = new HmacMasker(testKey());
    const rejections = Array.from({ length: 20 }, (_, i) => transform(queueMessage(`not json ${i}`, { messageId: `bad-${i}` }), masker));
    const ids = rejections.map((r) => r.message.messageId);
    const written = await one.write(rejections);
    assert.deepEqual(written.forward.map((f) => f.messageId).sort(), [...ids].sort());

    // Two writers holding the same redelivered rejections claim them at once: every id is
    // claimed by exactly one of them.
    const [a, b] = await Promise.all([one.claimForwarding(ids, 'batch-a'), two.claimForwarding([...ids].reverse(), 'batch-b')]);
    assert.deepEqual([...a, ...b].sort(), [...ids].sort());
    assert.equal(new Set([...a, ...b]).size, ids.length);
    assert.deepEqual(await one.claimForwarding(ids, 'batch-c'), [], 'a claim takes once');
    // The same batch claiming again (its first answer lost) gets back exactly what it holds.
    assert.deepEqual((await one.claimForwarding(ids, 'batch-a')).sort(), [...a].sort());
    // A release gives back only the releasing batch's own claims.
    await two.releaseForwardingClaims(ids, 'batch-a');
    assert.deepEqual((await one.claimForwarding(ids, 'batch-c')).sort(), [...a].sort());

    // Claimed, never recorded (the process stopped after its send): not reported again.
    assert.deepEqual((await two.write(rejections)).forward, []);
    const [row] = await query<{ unconfirmed: number }>(
      databaseUrl,
      `SELECT count(*)::int AS unconfirmed FROM login_etl.rejected_messages
        WHERE forward_claimed_at IS NOT NULL AND forwarded_at IS NULL AND forward_error IS NULL`,
    );
    assert.equal(row?.unconfirmed, ids.length);
    const [claimants] = await query<{ n: number }>(databaseUrl, 'SELECT count(DISTINCT forward_claimed_by)::int AS n FROM login_etl.rejected_messages');
    assert.equal(claimants?.n, b.length > 0 ? 2 : 1, 'batch-a released to batch-c; batch-b kept its own');
  });
});

describe('createPool', () => {
  test('a checked-out connection cut between two queries does not crash the process; its next query fails and the pool goes on', { timeout: 15_000 }, async () => {
    const databaseUrl = await servers.database();
    const warnings: string[] = [];
    const log = { warn: (_fields: unknown, message: string) => warnings.push(message) } as unknown as Logger;
    const pool = createPool(databaseUrl, { max: 2, log, statementTimeoutMs: 10_000 });
    try {
      const client = await pool.connect();
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      // The client emits 'error' when its connection goes; without a listener of the pool's
      // the event would end this process (the test adds none of its own).
      await query(databaseUrl, 'SELECT pg_terminate_backend($1)', [rows[0]?.pid]);
      while (!warnings.includes('Postgres connection lost')) await new Promise((resolve) => setTimeout(resolve, 20));
      await assert.rejects(client.query('SELECT 1'));
      client.release(true);
      assert.equal((await pool.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one, 1);
    } finally {
      await pool.end();
    }
  });
});
