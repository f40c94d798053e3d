/**
 * Records what became of committed rejections on their way to the dead-letter queue: forwarded
 * (`forwarded_at`), or refused for good (`forward_error`, never the body). A rejection with
 * neither is still to be forwarded; write-batch.ts reports it again if its message comes back.
 */
import type pg from 'pg';

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
