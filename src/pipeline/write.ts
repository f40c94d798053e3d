/**
 * The writer: commits a batch with the shared commit algorithm (src/commit.ts) and holds it
 * through failures as the failure policy (src/failure.ts) says, and decides poison.
 */
import { BatchCommit } from '../commit.js';
import { describeError } from '../errors.js';
import { backoffMs, classify, DEPENDENCY_NAMES, type DependencyState } from '../failure.js';
import type { Dependency } from '../observability/health.js';
import type { Logger } from '../observability/logger.js';
import type { Sink } from '../sink/postgres.js';
import type { DeadLetterQueue } from '../source/queue.js';
import type { Masker } from '../transform/mask.js';
import type { QueueMessage } from '../source/queue.js';
import { reject, transform, type Outcome } from '../transform/transform.js';
import { sleep, type RetryOptions } from './held.js';

/** What a writer's commits have done, added up. */
export interface WriteTally {
  written: number;
  rejected: number;
  duplicates: number;
  /** Attempts that failed (transient or broken) and were retried. */
  writeFailures: number;
  deadLettered: number;
  unforwardable: number;
  unconfirmed: number;
}

export interface WriterDeps {
  readonly sink: Sink;
  readonly masker: Masker;
  readonly log: Logger;
  readonly deadLetters?: DeadLetterQueue | undefined;
  readonly states: Readonly<Record<Dependency, DependencyState>>;
  readonly tally: WriteTally;
  /** Told the last failure seen for each uncommitted message, for the reason of a later poison rejection. */
  readonly poison: PoisonJudge;
}

/**
 * Commits a batch, holding it through failures: transient and broken failures alike keep the
 * messages (the refresher extends them) and back off with jitter up to the cap. Resolves false
 * only when `hardStop` ends the wait; the caller then hands the messages back.
 */
export async function commitHeld(deps: WriterDeps, outcomes: readonly Outcome[], options: RetryOptions, hardStop: AbortSignal): Promise<boolean> {
  const { sink, masker, log, deadLetters, states, tally, poison } = deps;
  const commit = new BatchCommit(outcomes, { sink, masker, log, deadLetters });
  try {
    for (let attempt = 1; !hardStop.aborted; attempt += 1) {
      try {
        await commit.attempt();
        states.postgres.succeeded();
        if (commit.tally.deadLettered + commit.tally.unforwardable > 0) states['dead-letter-queue'].succeeded();
        return true;
      } catch (err) {
        if (hardStop.aborted) break;
        tally.writeFailures += 1;
        const failure = classify(err, 'postgres');
        for (const outcome of commit.uncommitted) poison.remember(outcome.message.messageId, failure.reason);
        const message =
          failure.kind === 'broken'
            ? `${DEPENDENCY_NAMES[failure.dependency]} refuses the batch; holding it and backing off until that is fixed`
            : 'batch write failed; holding it and retrying';
        states[failure.dependency].failed(failure, message, { attempt, messages: outcomes.length });
        await sleep(backoffMs(attempt, options.retryBaseDelayMs, options.retryMaxDelayMs), hardStop);
      }
    }
    log.error({ messages: outcomes.length }, 'batch not committed before the deadline; its messages go back to the queue');
    // The hard stop cancels the statements under way, which can take this one with it: once more.
    await commit.releaseClaims().catch(async () => await commit.releaseClaims()).catch((err: unknown) => {
      log.warn({ err: describeError(err), rejections: commit.unforwarded.length }, 'claims on rejections not yet forwarded could not be given back; they stay unconfirmed');
    });
    return false;
  } finally {
    tally.written += commit.tally.written;
    tally.rejected += commit.tally.rejected;
    tally.duplicates += commit.tally.duplicates;
    tally.deadLettered += commit.tally.deadLettered;
    tally.unforwardable += commit.tally.unforwardable;
    tally.unconfirmed += commit.tally.unconfirmed;
  }
}

const LAST_ERRORS_KEPT = 10_000;

/**
 * Poison is the message's own doing, decided by its receive count alone, never by a dependency:
 * a message received more often than `maxReceiveCount` is rejected, with the last error this
 * process saw for it.
 */
export class PoisonJudge {
  readonly #lastErrors = new Map<string, string>();

  constructor(
    readonly maxReceiveCount: number,
    private readonly tally: { poisoned: number },
  ) {}

  /** The outcome of a received message: poison, or what the transform makes of it. */
  outcome(message: QueueMessage, masker: Masker): Outcome {
    if (message.receiveCount <= this.maxReceiveCount) return transform(message, masker);
    this.tally.poisoned += 1;
    const last = this.#lastErrors.get(message.messageId);
    const reason =
      `received ${message.receiveCount} times without being committed (limit ${this.maxReceiveCount})` + (last === undefined ? '' : `; last error: ${last}`);
    return reject(message, reason, masker);
  }

  /** Keeps the last failure of a message, for the most recent ids. */
  remember(messageId: string, reason: string): void {
    this.#lastErrors.delete(messageId);
    this.#lastErrors.set(messageId, reason);
    if (this.#lastErrors.size > LAST_ERRORS_KEPT) {
      const oldest = this.#lastErrors.keys().next();
      if (!oldest.done) this.#lastErrors.delete(oldest.value);
    }
  }
}
