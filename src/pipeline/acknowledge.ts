/**
 * The acknowledger: deletes committed messages and hands uncommitted ones back to the queue.
 */
import { describeError } from '../errors.js';
import { backoffMs, classify } from '../failure.js';
import type { Logger } from '../observability/logger.js';
import type { MessageRef, Queue } from '../source/queue.js';
import { sleep, type RetryOptions } from './held.js';

export interface AckTally {
  deleteFailures: number;
  released: number;
}

export interface AcknowledgerDeps {
  readonly queue: Pick<Queue, 'delete' | 'changeVisibility'>;
  readonly log: Logger;
  readonly tally: AckTally;
}

/** How often a transient delete failure is tried in all. */
const DELETE_ATTEMPTS = 3;

export class Acknowledger {
  constructor(
    private readonly deps: AcknowledgerDeps,
    private readonly options: RetryOptions,
  ) {}

  /**
   * Deletes committed messages: a transient failure is tried again twice, anything else (and an
   * abort by `signal`) is left to the ledger, which skips the redelivery.
   */
  async delete(messages: readonly MessageRef[], signal: AbortSignal): Promise<void> {
    const { queue, log, tally } = this.deps;
    for (let attempt = 1; ; attempt += 1) {
      try {
        const failed = await queue.delete(messages, signal);
        if (failed.length > 0) {
          tally.deleteFailures += failed.length;
          log.warn({ messageIds: failed }, 'delete refused; the ledger will skip these on redelivery');
        }
        return;
      } catch (err) {
        if (signal.aborted || classify(err, 'sqs').kind !== 'transient' || attempt >= DELETE_ATTEMPTS) {
          tally.deleteFailures += messages.length;
          log.warn({ err: describeError(err), messages: messages.length }, 'delete failed; the ledger will skip these on redelivery');
          return;
        }
        await sleep(backoffMs(attempt, this.options.retryBaseDelayMs, this.options.retryMaxDelayMs), signal);
      }
    }
  }

  /** Makes uncommitted messages visible again at once instead of at the end of their timeout. */
  async release(messages: readonly MessageRef[], signal: AbortSignal): Promise<void> {
    const { queue, log, tally } = this.deps;
    tally.released += messages.length;
    try {
      const refused = await queue.changeVisibility(messages, 0, signal);
      if (refused.length > 0) log.warn({ messageIds: refused }, 'hand-back refused; these reappear when their visibility timeout ends');
    } catch (err) {
      log.warn({ err: describeError(err), messages: messages.length }, 'could not release messages; they reappear when their visibility timeout ends');
    }
  }
}
