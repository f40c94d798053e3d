/**
 * `login_etl.rejected_messages` beyond the batch statement: sealing bodies kept from before
 * migration 004, sealing again under a new key (rekey), and the reads of `login-etl rejected`.
 * Each rewrite works in small transactions that skip rows another process holds, so several
 * instances can run it at once and a crash loses nothing.
 */
import type pg from 'pg';
import type { Logger } from '../observability/logger.js';
import type { KeyRing } from '../transform/key.js';
import { openBody, type BodySealer, type SealedBody, type SealScheme } from '../transform/seal.js';
import type { SealedBox } from '../transform/sealed-box.js';
import { bodyShape, type BodyShape } from '../transform/shape.js';
import { withTransaction } from './transaction.js';

/** Rows rewritten per transaction. */
const BATCH_ROWS = 200;

interface Resealed {
  readonly messageId: string;
  readonly bytes: number;
  readonly token: string;
  readonly shape: BodyShape | undefined;
  readonly sealed: SealedBody;
}

async function writeSealed(client: pg.ClientBase, rows: readonly Resealed[]): Promise<void> {
  if (rows.length === 0) return;
  await client.query(
    `UPDATE login_etl.rejected_messages r
        SET legacy_body = NULL, body_bytes = v.bytes, body_token = v.token,
            body_shape = COALESCE(v.shape, r.body_shape), sealed_body = v.sealed,
            seal_key_id = v.key_id, seal_scheme = v.scheme
       FROM unnest($1::text[], $2::int[], $3::text[], $4::jsonb[], $5::bytea[], $6::text[], $7::text[])
         AS v(message_id, bytes, token, shape, sealed, key_id, scheme)
      WHERE r.message_id = v.message_id`,
    [
      rows.map((r) => r.messageId),
      rows.map((r) => r.bytes),
      rows.map((r) => r.token),
      rows.map((r) => (r.shape === undefined ? null : JSON.stringify(r.shape))),
      rows.map((r) => Buffer.from(r.sealed.sealed)),
      rows.map((r) => r.sealed.keyId),
      rows.map((r) => r.sealed.scheme),
    ],
  );
}

function reseal(messageId: string, body: string, sealer: BodySealer, shape: BodyShape | undefined): Resealed {
  return { messageId, bytes: Buffer.byteLength(body, 'utf8'), token: sealer.token(body), shape, sealed: sealer.seal(messageId, body) };
}

/**
 * Seals the bodies that were stored scrubbed before migration 004 (`legacy_body`) with the active
 * key, and clears them. Returns how many were sealed. What is sealed is the scrubbed text as it
 * was stored; the originals were never kept. The old text stays in dead row versions, planner
 * statistics and WAL until the table is rewritten, so sealing any ends with a warning that says
 * how to get rid of it.
 */
export async function sealLegacyBodies(pool: pg.Pool, sealer: BodySealer, log: Logger): Promise<number> {
  let sealed = 0;
  for (;;) {
    const count = await withTransaction(pool, async (client) => {
      const { rows } = await client.query<{ message_id: string; legacy_body: string }>(
        `SELECT message_id, legacy_body FROM login_etl.rejected_messages
          WHERE legacy_body IS NOT NULL
          LIMIT $1 FOR UPDATE SKIP LOCKED`,
        [BATCH_ROWS],
      );
      await writeSealed(client, rows.map((r) => reseal(r.message_id, r.legacy_body, sealer, bodyShape(r.legacy_body))));
      return rows.length;
    });
    sealed += count;
    if (count < BATCH_ROWS) break;
  }
  if (sealed > 0) {
    log.warn(
      { bodies: sealed },
      'rejected bodies stored before sealing are sealed now; their old text stays on disk until the table owner runs VACUUM FULL login_etl.rejected_messages and ANALYZE login_etl.rejected_messages (docs/pii.md)',
    );
  }
  return sealed;
}

export interface ResealReport {
  /** Bodies now sealed under the active key. */
  readonly resealed: number;
  /** Bodies of earlier keys that could not be opened (key missing or retired, no private key, altered). */
  readonly unopened: number;
}

/** After a key change, seals every body of an earlier key again under the active one. */
export async function resealBodies(pool: pg.Pool, ring: KeyRing, box: SealedBox | undefined, sealer: BodySealer): Promise<ResealReport> {
  let resealed = 0;
  let unopened = 0;
  const skipped: string[] = [];
  for (;;) {
    const count = await withTransaction(pool, async (client) => {
      const { rows } = await client.query<{ message_id: string; sealed_body: Buffer; seal_key_id: string; seal_scheme: SealScheme; body_token: string | null }>(
        `SELECT message_id, sealed_body, seal_key_id, seal_scheme, body_token FROM login_etl.rejected_messages
          WHERE seal_key_id <> $1 AND message_id <> ALL($2::text[])
          LIMIT $3 FOR UPDATE SKIP LOCKED`,
        [sealer.keyId, skipped, BATCH_ROWS],
      );
      const rewritten: Resealed[] = [];
      for (const row of rows) {
        const opened = openBody(row.message_id, { scheme: row.seal_scheme, keyId: row.seal_key_id, sealed: row.sealed_body }, row.body_token, ring, box);
        if (opened.kind === 'refused') {
          skipped.push(row.message_id);
          unopened += 1;
        } else rewritten.push(reseal(row.message_id, opened.body, sealer, undefined));
      }
      await writeSealed(client, rewritten);
      resealed += rewritten.length;
      return rows.length;
    });
    if (count < BATCH_ROWS) return { resealed, unopened };
  }
}

/** A rejected message as `login-etl rejected` lists it: everything but the sealed body. */
export interface RejectedRow {
  readonly messageId: string;
  readonly reason: string;
  readonly rejectedAt: Date;
  readonly sentAt: Date | null;
  readonly receiveCount: number | null;
  readonly bytes: number | null;
  readonly token: string | null;
  readonly shape: BodyShape | null;
  readonly replayedAt: Date | null;
  /**
   * What became of it on the way to the dead-letter queue: forwarded, refused for good, unconfirmed
   * (claimed and sent, with no answer or no record of one: maybe there, not sent again), or none
   * (no dead-letter queue, or not yet).
   */
  readonly deadLetter: 'forwarded' | 'refused' | 'unconfirmed' | 'none';
  /** The key the body is sealed with; null while a body stored before sealing waits for it. */
  readonly keyId: string | null;
  /** Present when the row was read with its body. */
  readonly sealed?: SealedBody;
}

export interface RejectedFilter {
  /** Exactly these message ids; otherwise every row matching the rest of the filter. */
  readonly messageIds?: readonly string[];
  readonly since?: Date;
  readonly until?: Date;
  /** Only rows not yet replayed. */
  readonly notReplayed?: boolean;
  readonly limit: number;
}

/** Rejected messages, oldest first, with or without their sealed bodies. */
export async function readRejected(db: pg.Pool | pg.ClientBase, filter: RejectedFilter, withBodies: boolean): Promise<RejectedRow[]> {
  const { rows } = await db.query<{
    message_id: string;
    reason: string;
    rejected_at: Date;
    sent_at: Date | null;
    receive_count: number | null;
    body_bytes: number | null;
    body_token: string | null;
    body_shape: BodyShape | null;
    replayed_at: Date | null;
    dead_letter: RejectedRow['deadLetter'];
    sealed_body: Buffer | null;
    seal_key_id: string | null;
    seal_scheme: SealScheme | null;
  }>(
    `SELECT message_id, reason, rejected_at, sent_at, receive_count, body_bytes, body_token, body_shape, replayed_at,
            CASE WHEN forwarded_at IS NOT NULL THEN 'forwarded'
                 WHEN forward_error IS NOT NULL THEN 'refused'
                 WHEN forward_claimed_at IS NOT NULL THEN 'unconfirmed'
                 ELSE 'none' END AS dead_letter,
            seal_key_id, seal_scheme, ${withBodies ? 'sealed_body' : 'NULL::bytea AS sealed_body'}
       FROM login_etl.rejected_messages
      WHERE ($1::text[] IS NULL OR message_id = ANY($1::text[]))
        AND ($2::timestamptz IS NULL OR rejected_at >= $2)
        AND ($3::timestamptz IS NULL OR rejected_at < $3)
        AND (NOT $4::boolean OR replayed_at IS NULL)
      ORDER BY rejected_at, message_id
      LIMIT $5`,
    [filter.messageIds ?? null, filter.since ?? null, filter.until ?? null, filter.notReplayed === true, filter.limit],
  );
  return rows.map((r) => ({
    messageId: r.message_id,
    reason: r.reason,
    rejectedAt: r.rejected_at,
    sentAt: r.sent_at,
    receiveCount: r.receive_count,
    bytes: r.body_bytes,
    token: r.body_token,
    shape: r.body_shape,
    replayedAt: r.replayed_at,
    deadLetter: r.dead_letter,
    keyId: r.seal_key_id,
    ...(r.sealed_body === null || r.seal_key_id === null || r.seal_scheme === null
      ? {}
      : { sealed: { scheme: r.seal_scheme, keyId: r.seal_key_id, sealed: r.sealed_body } }),
  }));
}

/** Marks rejected messages as sent back to a queue. */
export async function markReplayed(db: pg.Pool | pg.ClientBase, messageIds: readonly string[]): Promise<void> {
  if (messageIds.length === 0) return;
  await db.query('UPDATE login_etl.rejected_messages SET replayed_at = now() WHERE message_id = ANY($1::text[])', [messageIds]);
}
