/**
 * `login-etl rejected`: the rejected messages kept in `login_etl.rejected_messages`.
 *
 * `list` shows what is stored in clear (reason, size, shape) and needs no key. `show`, `export`
 * and `replay` open the sealed original bodies, so they are for key holders, and every use is
 * recorded with `recordAudit` (who, why, which message ids, how many opened; never a body) and
 * committed before any body is printed or sent. The usual reason to keep a rejected message is to
 * send it again once the producer or the pipeline is fixed: `replay` does that and marks the row.
 */
import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type pg from 'pg';
import { recordAudit, type AuditSource } from './audit.js';
import { printable, printableJson } from './observability/printable.js';
import { plural } from './plural.js';
import { formatTable } from './observability/table.js';
import { markReplayed, readRejected, type RejectedFilter, type RejectedRow } from './sink/rejected.js';
import type { KeyRing } from './transform/key.js';
import { openBody } from './transform/seal.js';
import { loadSealedBox, type SealedBox } from './transform/sealed-box.js';
import { describeShape } from './transform/shape.js';

/** Bodies read from the database at a time: each can be up to 1 MiB. */
const PAGE_ROWS = 50;
/** Messages per SendMessageBatch when replaying: SQS's most. */
const REPLAY_BATCH = 10;
/** Body bytes per SendMessageBatch: within the 256 KiB that LocalStack and older queues enforce. */
const REPLAY_BATCH_BYTES = 256 * 1024;
/** Deadline of one SendMessageBatch. */
const SEND_TIMEOUT_MS = 30_000;

/** Where a command's lines go: `out` is the data, `err` the messages for the person running it. */
export interface Output {
  out(line: string): Promise<void> | void;
  err(line: string): void;
}

export interface Selection {
  readonly filter: RejectedFilter;
  /** `arguments` when message ids were given, `filter` otherwise. */
  readonly source: AuditSource;
  readonly reason: string | undefined;
}

type Opening =
  | { readonly kind: 'opened'; readonly row: RejectedRow; readonly body: string }
  | { readonly kind: 'refused'; readonly messageId: string; readonly reason: string };

/** What `rejected` prints about a message besides its body: all of it stored in clear. */
function summary(row: RejectedRow) {
  return {
    message_id: row.messageId,
    rejected_at: row.rejectedAt.toISOString(),
    sent_at: row.sentAt?.toISOString() ?? null,
    receive_count: row.receiveCount,
    reason: row.reason,
    bytes: row.bytes,
    token: row.token,
    shape: row.shape,
    replayed_at: row.replayedAt?.toISOString() ?? null,
    dead_letter: row.deadLetter,
  };
}


/** `rejected list`: what is stored in clear, as a table or JSON Lines. Opens nothing. */
export async function listRejected(pool: pg.Pool, filter: RejectedFilter, json: boolean, output: Output): Promise<number> {
  const rows = await readRejected(pool, filter, false);
  if (json) {
    for (const row of rows) await output.out(printableJson(summary(row)));
    return 0;
  }
  if (rows.length === 0) {
    await output.out('  (no rejected messages)');
    return 0;
  }
  const cells = rows.map((r) => [
    r.messageId,
    r.rejectedAt.toISOString(),
    r.reason,
    String(r.bytes ?? ''),
    r.shape === null ? 'not sealed yet' : describeShape(r.shape),
    r.deadLetter,
    r.replayedAt?.toISOString() ?? '',
  ]);
  await output.out(formatTable([['message_id', 'rejected_at', 'reason', 'bytes', 'shape', 'dead_letter', 'replayed_at'], ...cells]));
  return 0;
}

async function* openings(pool: pg.Pool, ids: readonly string[], ring: KeyRing, box: SealedBox | undefined): AsyncGenerator<Opening> {
  for (let start = 0; start < ids.length; start += PAGE_ROWS) {
    const page = ids.slice(start, start + PAGE_ROWS);
    const rows = new Map((await readRejected(pool, { messageIds: page, limit: page.length }, true)).map((row) => [row.messageId, row]));
    for (const messageId of page) {
      const row = rows.get(messageId);
      if (row === undefined) yield { kind: 'refused', messageId, reason: 'is no longer in login_etl.rejected_messages' };
      else if (row.sealed === undefined) yield { kind: 'refused', messageId, reason: 'is not sealed yet (stored before sealing; the next `run` seals it)' };
      else {
        const opened = openBody(messageId, row.sealed, row.token, ring, box);
        yield opened.kind === 'opened' ? { kind: 'opened', row, body: opened.body } : { kind: 'refused', messageId, reason: opened.reason };
      }
    }
  }
}

interface Audited {
  readonly auditId: string;
  readonly asked: number;
  readonly missing: readonly string[];
  readonly refused: number;
  /** Every chosen message once more, opened, a page at a time. */
  each(): AsyncGenerator<Opening>;
}

/**
 * Chooses the messages, opens each once to count what the ring can open, records the use and
 * commits it, and only then hands out the bodies: opened again, a page at a time, so that memory
 * stays bounded whatever the selection.
 */
async function audited(pool: pg.Pool, ring: KeyRing, selection: Selection, action: 'rejected-show' | 'rejected-export' | 'rejected-replay', target?: string): Promise<Audited> {
  const found = await readRejected(pool, selection.filter, false);
  const ids = found.map((row) => row.messageId);
  const present = new Set(ids);
  const missing = (selection.filter.messageIds ?? []).filter((id) => !present.has(id));
  const box = ring.keys.some((key) => key.hasPrivateKey) ? await loadSealedBox() : undefined;
  let opened = 0;
  for await (const opening of openings(pool, ids, ring, box)) if (opening.kind === 'opened') opened += 1;
  const auditId = await recordAudit(pool, {
    action,
    source: selection.source,
    reason: selection.reason,
    valuesRequested: ids.length + missing.length,
    valuesRecovered: opened,
    keyIds: [...new Set(found.flatMap((row) => (row.keyId === null ? [] : [row.keyId])))].sort(),
    messageIds: ids,
    ...(target === undefined ? {} : { target }),
  });
  return { auditId, asked: ids.length + missing.length, missing, refused: ids.length - opened, each: () => openings(pool, ids, ring, box) };
}

/** Exit code of an opening command: 0 when every message asked for was handled, 1 otherwise. */
function exitCode(done: number, chosen: Audited): number {
  return done > 0 && done === chosen.asked ? 0 : 1;
}

/** `rejected show` and `export`: one JSON line per message, with its original body. */
export async function printBodies(pool: pg.Pool, ring: KeyRing, selection: Selection, action: 'rejected-show' | 'rejected-export', output: Output): Promise<number> {
  const chosen = await audited(pool, ring, selection, action);
  for (const id of chosen.missing) output.err(`message ${printable(id)}: no such rejected message`);
  let done = 0;
  for await (const opening of chosen.each()) {
    if (opening.kind === 'refused') output.err(`message ${printable(opening.messageId)}: refused: ${opening.reason}`);
    else {
      await output.out(printableJson({ ...summary(opening.row), body: opening.body }));
      done += 1;
    }
  }
  output.err(`opened ${done} of ${plural(chosen.asked, 'rejected message')} (audit record ${chosen.auditId})`);
  return exitCode(done, chosen);
}

/**
 * Sends one batch and marks exactly the messages SQS accepted: one it refuses (too large for the
 * queue, say) is reported and left unmarked, so `--not-replayed` finds it again, and one it
 * accepted is never sent twice by a rerun.
 */
async function sendBatch(pool: pg.Pool, sqs: SQSClient, queueUrl: string, batch: readonly { id: string; body: string }[], output: Output): Promise<number> {
  if (batch.length === 0) return 0;
  const response = await sqs.send(
    new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: batch.map((m, i) => ({ Id: String(i), MessageBody: m.body })) }),
    { abortSignal: AbortSignal.timeout(SEND_TIMEOUT_MS) },
  );
  const sent = (response.Successful ?? []).flatMap((entry) => batch[Number(entry.Id)] ?? []);
  await markReplayed(pool, sent.map((m) => m.id));
  for (const failed of response.Failed ?? []) {
    output.err(`message ${printable(batch[Number(failed.Id)]?.id ?? '?')}: not replayed: SQS refused it (${printable(failed.Code ?? 'unknown')})`);
  }
  return sent.length;
}

/** `rejected replay`: sends the original bodies to a queue, and marks each row replayed. */
export async function replayBodies(pool: pg.Pool, ring: KeyRing, selection: Selection, sqs: SQSClient, queueUrl: string, output: Output): Promise<number> {
  const chosen = await audited(pool, ring, selection, 'rejected-replay', queueUrl);
  for (const id of chosen.missing) output.err(`message ${printable(id)}: no such rejected message`);
  let done = 0;
  let batch: { id: string; body: string }[] = [];
  let batchBytes = 0;
  for await (const opening of chosen.each()) {
    if (opening.kind === 'refused') {
      output.err(`message ${printable(opening.messageId)}: refused: ${opening.reason}`);
      continue;
    }
    // SQS takes no empty body: such a body cannot go back.
    if (opening.body === '') {
      output.err(`message ${printable(opening.row.messageId)}: its body is empty; SQS cannot take it`);
      continue;
    }
    const bytes = Buffer.byteLength(opening.body, 'utf8');
    if (batch.length === REPLAY_BATCH || (batch.length > 0 && batchBytes + bytes > REPLAY_BATCH_BYTES)) {
      done += await sendBatch(pool, sqs, queueUrl, batch, output);
      [batch, batchBytes] = [[], 0];
    }
    batch.push({ id: opening.row.messageId, body: opening.body });
    batchBytes += bytes;
  }
  done += await sendBatch(pool, sqs, queueUrl, batch, output);
  output.err(`replayed ${done} of ${plural(chosen.asked, 'rejected message')} to ${printable(queueUrl)} (audit record ${chosen.auditId})`);
  return exitCode(done, chosen);
}
