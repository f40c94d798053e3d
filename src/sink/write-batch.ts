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
      FROM unnest($1::text[], $2::boolean[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                  $8::integer[], $9::date[], $10::text[], $11::text[], $12::timestamptz[], $13::integer[])
        AS t(message_id, accepted, user_id, device_type, masked_ip, masked_device_id, locale,
             app_version, create_date, reason, body, sent_at, receive_count)
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
    INSERT INTO login_etl.rejected_messages (message_id, reason, body, sent_at, receive_count)
    SELECT i.message_id, i.reason, i.body, i.sent_at, i.receive_count
      FROM input i JOIN fresh f USING (message_id)
     WHERE NOT i.accepted
 RETURNING 1
),
-- Vault mode: the sealed originals of the new messages. Equal values have equal tokens, and the
-- first sealing of a token is as good as any other.
vaulted AS (
    INSERT INTO login_etl.pii_vault (token, key_id, field, sealed)
    SELECT v.token, v.key_id, v.field, v.sealed
      FROM unnest($14::text[], $15::text[], $16::text[], $17::text[], $18::bytea[])
        AS v(message_id, token, key_id, field, sealed)
      JOIN fresh f USING (message_id)
        ON CONFLICT (token) DO NOTHING
)
SELECT (SELECT count(*) FROM written)::integer AS written,
       (SELECT count(*) FROM rejected)::integer AS rejected`;

export interface WriteResult {
  readonly written: number;
  readonly rejected: number;
  /** Messages whose id was already in the ledger: redeliveries, skipped. */
  readonly duplicates: number;
}

/** Keeps the first outcome of each message id: one statement cannot insert an id twice. */
function uniqueById(outcomes: readonly Outcome[]): Outcome[] {
  const seen = new Set<string>();
  return outcomes.filter((o) => !seen.has(o.message.messageId) && (seen.add(o.message.messageId), true));
}

export async function writeBatch(db: pg.Pool | pg.PoolClient, outcomes: readonly Outcome[]): Promise<WriteResult> {
  const unique = uniqueById(outcomes);
  if (unique.length === 0) return { written: 0, rejected: 0, duplicates: outcomes.length };
  const columns = {
    messageId: [] as string[],
    accepted: [] as boolean[],
    userId: [] as (string | null)[],
    deviceType: [] as (string | null)[],
    maskedIp: [] as (string | null)[],
    maskedDeviceId: [] as (string | null)[],
    locale: [] as (string | null)[],
    appVersion: [] as (number | null)[],
    createDate: [] as (string | null)[],
    reason: [] as (string | null)[],
    body: [] as (string | null)[],
    sentAt: [] as (string | null)[],
    receiveCount: [] as number[],
  };
  for (const outcome of unique) {
    const { message } = outcome;
    const row = outcome.kind === 'accepted' ? outcome.row : undefined;
    columns.messageId.push(message.messageId);
    columns.accepted.push(outcome.kind === 'accepted');
    columns.userId.push(row?.user_id ?? null);
    columns.deviceType.push(row?.device_type ?? null);
    columns.maskedIp.push(row?.masked_ip ?? null);
    columns.maskedDeviceId.push(row?.masked_device_id ?? null);
    columns.locale.push(row?.locale ?? null);
    columns.appVersion.push(row?.app_version ?? null);
    columns.createDate.push(row?.create_date ?? null);
    columns.reason.push(outcome.kind === 'rejected' ? outcome.reason : null);
    columns.body.push(outcome.kind === 'rejected' ? outcome.maskedBody : null);
    columns.sentAt.push(message.sentTimestampMs === undefined ? null : new Date(message.sentTimestampMs).toISOString());
    columns.receiveCount.push(message.receiveCount);
  }
  const vault = { messageId: [] as string[], token: [] as string[], keyId: [] as string[], field: [] as string[], sealed: [] as Buffer[] };
  const tokens = new Set<string>();
  for (const outcome of unique) {
    for (const entry of outcome.vault ?? []) {
      if (tokens.has(entry.token)) continue;
      tokens.add(entry.token);
      vault.messageId.push(outcome.message.messageId);
      vault.token.push(entry.token);
      vault.keyId.push(entry.keyId);
      vault.field.push(entry.field);
      vault.sealed.push(Buffer.from(entry.sealed));
    }
  }
  const { rows } = await db.query<{ written: number; rejected: number }>({
    name: 'login-etl-write-batch',
    text: WRITE_BATCH,
    values: [...Object.values(columns), ...Object.values(vault)],
  });
  const written = rows[0]?.written ?? 0;
  const rejected = rows[0]?.rejected ?? 0;
  return { written, rejected, duplicates: outcomes.length - written - rejected };
}
