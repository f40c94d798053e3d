/**
 * Records what becomes of committed rejections on their way to the dead-letter queue: claimed
 * for forwarding by one writer (`forward_claimed_at`, before the send), then forwarded
 * (`forwarded_at`) or refused for good (`forward_error`, never the body). A rejection not
 * claimed is still to be forwarded; write-batch.ts reports it again if its message comes back.
 */
import type pg from 'pg';

// The rows are locked in one order (by id) so that two writers claiming overlapping sets wait
// for each other instead of deadlocking; the second sees the first's claims once it commits.
const CLAIM_FORWARDING = `
WITH candidates AS (
    SELECT message_id FROM login_etl.rejected_messages
     WHERE message_id = ANY($1::text[])
     ORDER BY message_id
       FOR UPDATE
)
UPDATE login_etl.rejected_messages r
   SET forward_claimed_at = now(), forward_claimed_by = $2
  FROM candidates c
 WHERE r.message_id = c.message_id
   AND (r.forward_claimed_at IS NULL OR r.forward_claimed_by = $2)
   AND r.forwarded_at IS NULL AND r.forward_error IS NULL
RETURNING r.message_id`;

/**
 * Claims rejections for forwarding under `claimant` (a batch's own random token) and returns the
 * ids it holds: a rejection is sent to the dead-letter queue only by the writer whose claim took,
 * so at most once. Two writers that hold the same redelivered rejection race here; the row lock
 * lets exactly one of them win. Claiming again with the same token returns the claims already
 * held, so a claim whose answer was lost is not mistaken for another writer's.
 */
export async function claimForwarding(db: pg.Pool | pg.ClientBase, messageIds: readonly string[], claimant: string): Promise<string[]> {
  if (messageIds.length === 0) return [];
  const { rows } = await db.query<{ message_id: string }>({ name: 'login-etl-claim-forwarding', text: CLAIM_FORWARDING, values: [messageIds, claimant] });
  return rows.map((r) => r.message_id);
}

const RELEASE_CLAIMS = `
UPDATE login_etl.rejected_messages
   SET forward_claimed_at = NULL, forward_claimed_by = NULL
 WHERE message_id = ANY($1::text[]) AND forward_claimed_by = $2 AND forwarded_at IS NULL AND forward_error IS NULL`;

/**
 * Gives claims back for rejections known not to have been sent (the dead-letter queue answered
 * with an error, or was never reached), so that the next delivery of their messages forwards them.
 */
export async function releaseForwardingClaims(db: pg.Pool | pg.ClientBase, messageIds: readonly string[], claimant: string): Promise<void> {
  if (messageIds.length === 0) return;
  await db.query({ name: 'login-etl-release-forwarding', text: RELEASE_CLAIMS, values: [messageIds, claimant] });
}

const RECORD_FORWARDING = `
WITH forwarded AS (
    UPDATE login_etl.rejected_messages
       SET forwarded_at = now()
     WHERE message_id = ANY($1::text[])
)
UPDATE login_etl.rejected_messages r
   SET forward_error = v.reason
  FROM unnest($2::text[], $3::text[]) AS v(message_id, reason)
 WHERE r.message_id = v.message_id`;

export interface ForwardingRecord {
  readonly forwarded: readonly string[];
  readonly refused: readonly { readonly messageId: string; readonly reason: string }[];
}

export async function recordForwarding(db: pg.Pool | pg.ClientBase, record: ForwardingRecord): Promise<void> {
  if (record.forwarded.length === 0 && record.refused.length === 0) return;
  await db.query({
    name: 'login-etl-record-forwarding',
    text: RECORD_FORWARDING,
    values: [record.forwarded, record.refused.map((r) => r.messageId), record.refused.map((r) => r.reason)],
  });
}
