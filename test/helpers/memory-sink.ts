/**
 * An in-memory sink that keeps a ledger, rows and rejections the way write-batch.ts does, for
 * unit tests of the commit algorithm and the pipeline: a statement commits all its outcomes or
 * none, ids already in the ledger are duplicates, and the committed rejections still to forward
 * are reported back. `fault` may throw to fail a statement before anything is committed.
 */
import { SinkError } from '../../src/errors.js';
import type { Sink } from '../../src/sink/postgres.js';
import type { ForwardingRecord } from '../../src/sink/record-forwarding.js';
import type { WriteResult } from '../../src/sink/write-batch.js';
import type { Outcome } from '../../src/transform/transform.js';

export interface StoredRejection {
  readonly reason: string;
  claimed: boolean;
  claimant?: string | undefined;
  forwarded: boolean;
  forwardError: string | undefined;
}

export class MemorySink implements Sink {
  readonly ledger = new Map<string, 'written' | 'rejected'>();
  /** user_id of each row written, in order. */
  readonly rows: string[] = [];
  readonly rejections = new Map<string, StoredRejection>();
  /** The outcomes of every statement tried, failed ones included. */
  readonly statements: (readonly Outcome[])[] = [];
  readonly records: ForwardingRecord[] = [];
  fault: ((outcomes: readonly Outcome[]) => void) | undefined;
  recordFault: ((record: ForwardingRecord) => void) | undefined;
  claimFault: ((messageIds: readonly string[]) => void) | undefined;

  async write(outcomes: readonly Outcome[]): Promise<WriteResult> {
    this.statements.push(outcomes);
    await Promise.resolve();
    this.fault?.(outcomes);
    let written = 0;
    let rejected = 0;
    const forward: { messageId: string; reason: string }[] = [];
    const seen = new Set<string>();
    for (const outcome of outcomes) {
      const id = outcome.message.messageId;
      if (this.ledger.has(id) || seen.has(id)) {
        const stored = this.rejections.get(id);
        if (!seen.has(id) && stored !== undefined && !stored.claimed && !stored.forwarded && stored.forwardError === undefined) forward.push({ messageId: id, reason: stored.reason });
        seen.add(id);
        continue;
      }
      seen.add(id);
      if (outcome.kind === 'accepted') {
        this.ledger.set(id, 'written');
        this.rows.push(outcome.row.user_id);
        written += 1;
      } else {
        this.ledger.set(id, 'rejected');
        this.rejections.set(id, { reason: outcome.reason, claimed: false, forwarded: false, forwardError: undefined });
        forward.push({ messageId: id, reason: outcome.reason });
        rejected += 1;
      }
    }
    return { written, rejected, duplicates: outcomes.length - written - rejected, forward };
  }

  async claimForwarding(messageIds: readonly string[], claimant: string): Promise<string[]> {
    await Promise.resolve();
    const claimed: string[] = [];
    for (const id of messageIds) {
      const stored = this.rejections.get(id);
      if (stored === undefined || (stored.claimed && stored.claimant !== claimant) || stored.forwarded || stored.forwardError !== undefined) continue;
      stored.claimed = true;
      stored.claimant = claimant;
      claimed.push(id);
    }
    // A fault after the claims took: their answer is lost, as when a connection is cut after the commit.
    this.claimFault?.(messageIds);
    return claimed;
  }

  async releaseForwardingClaims(messageIds: readonly string[], claimant: string): Promise<void> {
    await Promise.resolve();
    for (const id of messageIds) {
      const stored = this.rejections.get(id);
      if (stored !== undefined && stored.claimant === claimant && !stored.forwarded && stored.forwardError === undefined) {
        stored.claimed = false;
        stored.claimant = undefined;
      }
    }
  }

  async recordForwarding(record: ForwardingRecord): Promise<void> {
    await Promise.resolve();
    this.recordFault?.(record);
    this.records.push(record);
    for (const id of record.forwarded) {
      const stored = this.rejections.get(id);
      if (stored !== undefined) stored.forwarded = true;
    }
    for (const { messageId, reason } of record.refused) {
      const stored = this.rejections.get(messageId);
      if (stored !== undefined) stored.forwardError = reason;
    }
  }
}

/** A SinkError as PgSink throws it for a Postgres error with this SQLSTATE. */
export function pgError(code: string, message: string): SinkError {
  return new SinkError(`Postgres refused the write: ${message} (SQLSTATE ${code})`, { cause: Object.assign(new Error(message), { code }) });
}
