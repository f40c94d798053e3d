/**
 * Commits one batch of outcomes in a single statement, which Postgres runs as one transaction
 * in one round trip: ledger rows for every message id not seen before, then the login rows and
 * rejected messages of exactly those ids. Ids already in the ledger are duplicates and are
 * skipped, so a redelivered message never produces a second row.
 */
import type pg from 'pg';
import type { Outcome } from '../transform/transform.js';

const WRITE_BATCH = `
WITH input AS (
    SELECT *
      FROM json_to_recordset($1::json)
        AS t(message_id text, accepted boolean, user_id text, device_type text, masked_ip text,
             masked_device_id text, locale text, app_version integer, create_date date,
             reason text, body_bytes integer, body_token text, body_shape jsonb, sealed_body text,
             seal_key_id text, seal_scheme text, sent_at_ms double precision, receive_count integer)
),
fresh AS (
    INSERT INTO login_etl.processed_messages (message_id, outcome)
    SELECT message_id, CASE WHEN accepted THEN 'written' ELSE 'rejected' END
      FROM input
     ORDER BY message_id
        ON CONFLICT (message_id) DO NOTHING
 RETURNING message_id
),
written AS (
    INSERT INTO user_logins (user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date)
    SELECT i.user_id, i.device_type, i.masked_ip, i.masked_device_id, i.locale, i.app_version, i.create_date
      FROM input i JOIN fresh f USING (message_id)
     WHERE i.accepted
 RETURNING 1
),
rejected AS (
    INSERT INTO login_etl.rejected_messages (message_id, reason, body_bytes, body_token, body_shape, sealed_body,
                                             seal_key_id, seal_scheme, sent_at, receive_count)
    SELECT i.message_id, i.reason, i.body_bytes, i.body_token, i.body_shape, decode(i.sealed_body, 'base64'),
           i.seal_key_id, i.seal_scheme, to_timestamp(i.sent_at_ms / 1000), i.receive_count
      FROM input i JOIN fresh f USING (message_id)
     WHERE NOT i.accepted
 RETURNING 1
),
-- Vault mode: the sealed originals of the new messages. Equal values have equal tokens, and the
-- first sealing of a token is as good as any other.
vaulted AS (
    INSERT INTO login_etl.pii_vault (token, key_id, field, sealed)
    SELECT v.token, v.key_id, v.field, v.sealed
      FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[])
        AS v(message_id, token, key_id, field, sealed)
      JOIN fresh f USING (message_id)
        ON CONFLICT (token) DO NOTHING
),
-- Rejections to forward to the dead-letter queue: those this statement records, and those of
-- redelivered ids committed earlier that no writer has claimed for forwarding yet (a crash or a
-- failure between the commit and the claim). Only duplicates, which are rare, are looked up.
to_forward AS (
    SELECT i.message_id, i.reason FROM input i JOIN fresh f USING (message_id) WHERE NOT i.accepted
    UNION ALL
    SELECT r.message_id, r.reason
      FROM login_etl.rejected_messages r
     WHERE r.message_id IN (SELECT message_id FROM input EXCEPT ALL SELECT message_id FROM fresh)
       AND r.forward_claimed_at IS NULL AND r.forwarded_at IS NULL AND r.forward_error IS NULL
)
SELECT (SELECT count(*) FROM written)::integer AS written,
       (SELECT count(*) FROM rejected)::integer AS rejected,
       (SELECT json_agg(json_build_array(message_id, reason)) FROM to_forward) AS forward`;

export interface WriteResult {
  readonly written: number;
  readonly rejected: number;
  /** Messages whose id was already in the ledger: redeliveries, skipped. */
  readonly duplicates: number;
  /**
   * Committed rejections not yet forwarded to the dead-letter queue, with their reasons: the new
   * ones, and redelivered ones whose forwarding was never recorded.
   */
  readonly forward: readonly { readonly messageId: string; readonly reason: string }[];
}

/** Keeps the first outcome of each message id: one statement cannot insert an id twice. */
function uniqueById(outcomes: readonly Outcome[]): Outcome[] {
  const seen = new Set<string>();
  return outcomes.filter((o) => !seen.has(o.message.messageId) && (seen.add(o.message.messageId), true));
}

export async function writeBatch(db: pg.Pool | pg.ClientBase, outcomes: readonly Outcome[]): Promise<WriteResult> {
  const unique = uniqueById(outcomes);
  if (unique.length === 0) return { written: 0, rejected: 0, duplicates: outcomes.length, forward: [] };
  // One JSON document for all rows: JSON.stringify builds it natively as one string, where
  // node-postgres would build thirteen array literals by concatenation, the largest allocation
  // of a run (docs/benchmarks.md). Every object has the same shape (spreading rows of two kinds
  // cost more than the statement); JSON.stringify leaves undefined keys out, and Postgres reads
  // a missing key as null.
  const input = unique.map((outcome) => {
    const { message } = outcome;
    const row = outcome.kind === 'accepted' ? outcome.row : undefined;
    const rejection = outcome.kind === 'rejected' ? outcome : undefined;
    return {
      message_id: message.messageId,
      accepted: row !== undefined,
      user_id: row?.user_id,
      device_type: row?.device_type,
      masked_ip: row?.masked_ip,
      masked_device_id: row?.masked_device_id,
      locale: row?.locale,
      app_version: row?.app_version,
      create_date: row?.create_date,
      reason: rejection?.reason,
      body_bytes: rejection?.bytes,
      body_token: rejection?.token,
      body_shape: rejection?.shape,
      sealed_body: rejection === undefined ? undefined : Buffer.from(rejection.sealed.sealed).toString('base64'),
      seal_key_id: rejection?.sealed.keyId,
      seal_scheme: rejection?.sealed.scheme,
      sent_at_ms: message.sentTimestampMs,
      receive_count: message.receiveCount,
    };
  });
  const vault = { messageId: [] as string[], token: [] as string[], keyId: [] as string[], field: [] as string[], sealed: [] as Buffer[] };
  const tokens = new Set<string>();
  for (const outcome of unique) {
    for (const entry of (outcome.kind === 'accepted' ? outcome.vault : undefined) ?? []) {
      if (tokens.has(entry.token)) continue;
      tokens.add(entry.token);
      vault.messageId.push(outcome.message.messageId);
      vault.token.push(entry.token);
      vault.keyId.push(entry.keyId);
      vault.field.push(entry.field);
      vault.sealed.push(Buffer.from(entry.sealed));
    }
  }
  const { rows } = await db.query<{ written: number; rejected: number; forward: [string, string][] | null }>({
    name: 'login-etl-write-batch',
    text: WRITE_BATCH,
    values: [JSON.stringify(input), ...Object.values(vault)],
  });
  const written = rows[0]?.written ?? 0;
  const rejected = rows[0]?.rejected ?? 0;
  const forward = (rows[0]?.forward ?? []).map(([messageId, reason]) => ({ messageId, reason }));
  if (written + rejected < unique.length) forward.push(...(await unforwardedCommittedElsewhere(db, unique, forward)));
  return { written, rejected, duplicates: outcomes.length - written - rejected, forward };
}

const UNFORWARDED = `
SELECT message_id, reason FROM login_etl.rejected_messages
 WHERE message_id = ANY($1::text[]) AND forward_claimed_at IS NULL AND forwarded_at IS NULL AND forward_error IS NULL`;

/**
 * Rejections of ids in this batch that another transaction committed while the write statement
 * waited for it, and that are not forwarded yet. The statement's ledger insert waits for a
 * concurrent insert of the same id and then skips it, but the statement reads rejected_messages
 * in the snapshot it started with, where that rejection is not visible yet; if its writer died
 * before forwarding (or its backend committed after its client was gone), nobody else would
 * forward it. A statement of its own reads what is committed now. Only batches with redelivered
 * ids pay for it.
 */
async function unforwardedCommittedElsewhere(
  db: pg.Pool | pg.ClientBase,
  unique: readonly Outcome[],
  known: readonly { readonly messageId: string }[],
): Promise<{ messageId: string; reason: string }[]> {
  const seen = new Set(known.map((f) => f.messageId));
  const ids = unique.filter((o) => o.kind === 'rejected' && !seen.has(o.message.messageId)).map((o) => o.message.messageId);
  if (ids.length === 0) return [];
  const { rows } = await db.query<{ message_id: string; reason: string }>({ name: 'login-etl-unforwarded', text: UNFORWARDED, values: [ids] });
  const reasons = new Map(rows.map((r) => [r.message_id, r.reason]));
  return ids.flatMap((messageId) => {
    const reason = reasons.get(messageId);
    return reason === undefined ? [] : [{ messageId, reason }];
  });
}
