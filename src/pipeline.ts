/**
 * The pipeline: receive loops that take up to 10 messages from the queue, transform them,
 * commit them in one statement, and only then delete them from the queue.
 *
 * Deleting after the commit, with the ledger skipping ids already committed, is what makes the
 * end state exact: a crash before the commit loses nothing (the messages reappear), a crash
 * after it duplicates nothing (the redelivered ids are skipped).
 */
import { setTimeout as sleepUntil } from 'node:timers/promises';
import { describeError, SinkError } from './errors.js';
import type { Logger } from './observability/logger.js';
import type { Sink } from './sink/postgres.js';
import { SQS_MAX_BATCH, type MessageRef, type Queue } from './source/sqs.js';
import type { Masker } from './transform/mask.js';
import { transform, type QueueMessage } from './transform/transform.js';

export interface PipelineOptions {
  readonly receiveConcurrency: number;
  readonly waitTimeSeconds: number;
  /** Stop once the queue reports no visible, in-flight or delayed messages. */
  readonly drain: boolean;
  readonly drainCheckIntervalMs?: number;
  readonly retryBaseDelayMs?: number;
  readonly retryMaxDelayMs?: number;
  /** Write attempts per batch before its messages are handed back to the queue. */
  readonly maxWriteAttempts?: number;
}

export interface PipelineStats {
  received: number;
  written: number;
  rejected: number;
  duplicates: number;
  batches: number;
  writeFailures: number;
  deleteFailures: number;
}

export interface PipelineDeps {
  readonly queue: Queue;
  readonly sink: Sink;
  readonly masker: Masker;
  readonly log: Logger;
}

/** Resolves after `ms`, or at once when `signal` aborts; never rejects. */
async function sleep(ms: number, signal: AbortSignal): Promise<void> {
  await sleepUntil(ms, undefined, { signal }).catch(() => undefined);
}

/** Exponential backoff with full jitter. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  return Math.random() * Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 20));
}

export class Pipeline {
  readonly stats: PipelineStats = {
    received: 0,
    written: 0,
    rejected: 0,
    duplicates: 0,
    batches: 0,
    writeFailures: 0,
    deleteFailures: 0,
  };
  #activeBatches = 0;
  readonly #options: Required<PipelineOptions>;

  constructor(
    private readonly deps: PipelineDeps,
    options: PipelineOptions,
  ) {
    this.#options = {
      drainCheckIntervalMs: 1_000,
      retryBaseDelayMs: 200,
      retryMaxDelayMs: 30_000,
      maxWriteAttempts: 8,
      ...options,
    };
  }

  /**
   * Runs until `stop` aborts (or, with `drain`, until the queue is empty). Batches already
   * received are finished and acknowledged before it resolves.
   */
  async run(stop: AbortSignal): Promise<PipelineStats> {
    const receiving = new AbortController();
    const stopReceiving = () => receiving.abort();
    stop.addEventListener('abort', stopReceiving, { once: true });
    if (stop.aborted) receiving.abort();
    try {
      const loops = Array.from({ length: this.#options.receiveConcurrency }, () => this.#receiveLoop(receiving.signal, stop));
      const watcher = this.#options.drain ? this.#watchDrain(receiving) : Promise.resolve();
      await Promise.all(loops);
      receiving.abort();
      await watcher;
      return this.stats;
    } finally {
      stop.removeEventListener('abort', stopReceiving);
    }
  }

  async #receiveLoop(receiving: AbortSignal, stop: AbortSignal): Promise<void> {
    const { queue, log } = this.deps;
    let failures = 0;
    while (!receiving.aborted) {
      let messages: QueueMessage[];
      try {
        messages = await queue.receive({ maxMessages: SQS_MAX_BATCH, waitTimeSeconds: this.#options.waitTimeSeconds, signal: receiving });
        failures = 0;
      } catch (err) {
        if (receiving.aborted) break;
        failures += 1;
        const delayMs = backoffMs(failures, this.#options.retryBaseDelayMs, this.#options.retryMaxDelayMs);
        log.warn({ err: describeError(err), attempt: failures, delayMs: Math.round(delayMs) }, 'receive failed; backing off');
        await sleep(delayMs, receiving);
        continue;
      }
      if (messages.length === 0) continue;
      this.#activeBatches += 1;
      try {
        await this.#processBatch(messages, stop);
      } finally {
        this.#activeBatches -= 1;
      }
    }
  }

  async #processBatch(messages: QueueMessage[], stop: AbortSignal): Promise<void> {
    const { sink, masker, log } = this.deps;
    const started = performance.now();
    this.stats.received += messages.length;
    const outcomes = messages.map((message) => transform(message, masker));
    for (const outcome of outcomes) {
      if (outcome.kind === 'rejected') log.warn({ messageId: outcome.message.messageId, reason: outcome.reason }, 'message rejected');
    }

    for (let attempt = 1; ; attempt += 1) {
      try {
        const result = await sink.write(outcomes);
        this.stats.written += result.written;
        this.stats.rejected += result.rejected;
        this.stats.duplicates += result.duplicates;
        this.stats.batches += 1;
        await this.#acknowledge(messages);
        log.info(
          { messages: messages.length, ...result, durationMs: Math.round(performance.now() - started) },
          'batch committed',
        );
        return;
      } catch (err) {
        this.stats.writeFailures += 1;
        const retryable = err instanceof SinkError && err.retryable;
        const giveUp = !retryable || attempt >= this.#options.maxWriteAttempts || stop.aborted;
        log.error({ err: describeError(err), attempt, retryable, messages: messages.length }, giveUp ? 'batch not committed; messages go back to the queue' : 'batch write failed; retrying');
        if (giveUp) {
          await this.#release(messages);
          if (!stop.aborted) await sleep(backoffMs(attempt, this.#options.retryBaseDelayMs, this.#options.retryMaxDelayMs), stop);
          return;
        }
        await sleep(backoffMs(attempt, this.#options.retryBaseDelayMs, this.#options.retryMaxDelayMs), stop);
      }
    }
  }

  /** Deletes committed messages. A failed delete only means a redelivery the ledger will skip. */
  async #acknowledge(messages: readonly MessageRef[]): Promise<void> {
    try {
      const failed = await this.deps.queue.delete(messages);
      if (failed.length > 0) {
        this.stats.deleteFailures += failed.length;
        this.deps.log.warn({ messageIds: failed }, 'delete refused; the ledger will skip these on redelivery');
      }
    } catch (err) {
      this.stats.deleteFailures += messages.length;
      this.deps.log.warn({ err: describeError(err), messages: messages.length }, 'delete failed; the ledger will skip these on redelivery');
    }
  }

  /** Makes uncommitted messages visible again at once instead of at the end of their timeout. */
  async #release(messages: readonly MessageRef[]): Promise<void> {
    try {
      await this.deps.queue.changeVisibility(messages, 0);
    } catch (err) {
      this.deps.log.warn({ err: describeError(err) }, 'could not release messages; they reappear when their visibility timeout ends');
    }
  }

  async #watchDrain(receiving: AbortController): Promise<void> {
    const { queue, log } = this.deps;
    while (!receiving.signal.aborted) {
      await sleep(this.#options.drainCheckIntervalMs, receiving.signal);
      if (receiving.signal.aborted || this.#activeBatches > 0) continue;
      try {
        const depth = await queue.depth();
        // A message we hold counts as in flight until it is deleted, after its commit, so
        // an all-zero depth means every message sent so far is committed.
        if (depth.visible + depth.inFlight + depth.delayed === 0 && this.#activeBatches === 0) {
          log.info('queue is empty; draining done');
          receiving.abort();
        }
      } catch (err) {
        log.warn({ err: describeError(err) }, 'could not read the queue depth');
      }
    }
  }
}
