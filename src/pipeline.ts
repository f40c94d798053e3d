/**
 * The pipeline: receive loops that take up to 10 messages from the queue, transform them,
 * commit them, and only then delete them from the queue.
 *
 * Deleting after the commit, with the ledger skipping ids already committed, is what makes the
 * end state exact: a crash before the commit loses nothing (the messages reappear), a crash
 * after it duplicates nothing (the redelivered ids are skipped). Everything else here keeps
 * that promise under pressure: visibility heartbeats for slow writes, back-pressure, retries,
 * splitting a batch around one bad row, poison limits, and a bounded graceful shutdown.
 */
import { setTimeout as sleepUntil } from 'node:timers/promises';
import { describeError, SinkError, SourceError } from './errors.js';
import { InFlight } from './in-flight.js';
import type { Health } from './observability/health.js';
import type { Logger } from './observability/logger.js';
import type { Sink } from './sink/postgres.js';
import { SQS_MAX_BATCH, type DeadLetterQueue, type MessageRef, type Queue } from './source/sqs.js';
import type { Masker } from './transform/mask.js';
import { reject, transform, type Outcome, type QueueMessage } from './transform/transform.js';

/** SQS keeps a message invisible for at most 12 hours after it was received. */
export const MAX_VISIBILITY_SECONDS = 43_200;

export interface PipelineOptions {
  readonly receiveConcurrency: number;
  readonly waitTimeSeconds: number;
  /** Stop once the queue reports no visible, in-flight or delayed messages. */
  readonly drain: boolean;
  /** The visibility timeout messages are received with; heartbeats extend at half of it. */
  readonly visibilityTimeoutSeconds: number;
  /** Ask for this visibility timeout on each receive instead of the queue's own. */
  readonly receiveVisibilityTimeoutSeconds?: number | undefined;
  readonly maxInFlightMessages?: number;
  readonly maxInFlightBytes?: number;
  /** Messages received more often than this without a commit are rejected as poison. */
  readonly maxReceiveCount?: number;
  /** After `stop`, time allowed for batches in flight before they are handed back. */
  readonly shutdownTimeoutMs?: number;
  /** Most messages committed in one transaction; several receives are gathered up to this. */
  readonly maxBatchMessages?: number;
  /** Longest a received message waits for others to share its transaction. */
  readonly flushIntervalMs?: number;
  /** Transactions written at once. */
  readonly writeConcurrency?: number;
  readonly drainCheckIntervalMs?: number;
  readonly retryBaseDelayMs?: number;
  readonly retryMaxDelayMs?: number;
}

export interface PipelineStats {
  received: number;
  written: number;
  rejected: number;
  duplicates: number;
  batches: number;
  writeFailures: number;
  deleteFailures: number;
  /** Messages handed back to the queue uncommitted. */
  released: number;
  visibilityExtensions: number;
  /** Rejected because their receive count passed the limit. */
  poisoned: number;
  deadLettered: number;
}

export interface PipelineDeps {
  readonly queue: Queue;
  readonly sink: Sink;
  readonly masker: Masker;
  readonly log: Logger;
  readonly deadLetters?: DeadLetterQueue | undefined;
  readonly health?: Health | undefined;
}

/** Resolves after `ms`, or at once when `signal` aborts; never rejects. */
export async function sleep(ms: number, signal: AbortSignal): Promise<void> {
  await sleepUntil(ms, undefined, { signal }).catch(() => undefined);
}

/** Exponential backoff with full jitter. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  return Math.random() * Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 20));
}

/**
 * What to do after a failure, decided in one place: `retry` the same work later (the
 * dependency is down or busy), or `release` the messages back to the queue (retrying here
 * cannot help). Rows Postgres refuses are split out before this is asked.
 */
function classifyFailure(err: unknown): 'retry' | 'release' {
  return (err instanceof SinkError || err instanceof SourceError) && err.retryable ? 'retry' : 'release';
}

/** The messages of one receive, from the receive until they are deleted or handed back. */
interface Received {
  readonly messages: readonly QueueMessage[];
  readonly outcomes: readonly Outcome[];
  readonly bytes: number;
  /** Wall-clock time of the receive, for SQS's 12-hour limit. */
  readonly receivedAtMs: number;
  /** Monotonic time (performance.now) the next visibility extension is due. */
  nextBeatAt: number;
  /** The extension under way, if any. */
  beat: Promise<void> | undefined;
  /** No more extensions: committed, handed back, or at the 12-hour limit. */
  settled: boolean;
}

/** Received batches committed together in one transaction. */
interface Batch {
  readonly messages: readonly QueueMessage[];
  /** Ids committed so far; a retry after a partial commit skips them. */
  readonly committed: Set<string>;
  /** Ids already sent to the dead-letter queue, so retries do not send them again. */
  readonly forwarded: Set<string>;
}

const LAST_ERRORS_KEPT = 10_000;

export class Pipeline {
  readonly stats: PipelineStats = {
    received: 0,
    written: 0,
    rejected: 0,
    duplicates: 0,
    batches: 0,
    writeFailures: 0,
    deleteFailures: 0,
    released: 0,
    visibilityExtensions: 0,
    poisoned: 0,
    deadLettered: 0,
  };
  /** Received batches not yet deleted or handed back. */
  readonly #held = new Set<Received>();
  /** Received batches waiting for a writer. */
  #pending: Received[] = [];
  #pendingMessages = 0;
  #receivingDone = false;
  #wakeWriters: (() => void)[] = [];
  readonly #options: Required<Omit<PipelineOptions, 'receiveVisibilityTimeoutSeconds'>> & Pick<PipelineOptions, 'receiveVisibilityTimeoutSeconds'>;
  readonly #inFlight: InFlight;
  /** Aborted when a graceful stop runs out of time: retries end and batches are handed back. */
  readonly #hardStop = new AbortController();
  /** The last failure seen per message id, for the reason of a poison rejection. */
  readonly #lastErrors = new Map<string, string>();

  constructor(
    private readonly deps: PipelineDeps,
    options: PipelineOptions,
  ) {
    this.#options = {
      maxInFlightMessages: 1_000,
      maxInFlightBytes: 64 * 1024 * 1024,
      maxReceiveCount: 10,
      shutdownTimeoutMs: 25_000,
      maxBatchMessages: 500,
      flushIntervalMs: 50,
      writeConcurrency: 2,
      drainCheckIntervalMs: 1_000,
      retryBaseDelayMs: 200,
      retryMaxDelayMs: 30_000,
      ...options,
    };
    this.#inFlight = new InFlight(this.#options.maxInFlightMessages, this.#options.maxInFlightBytes);
  }

  /** Messages and bytes held right now. */
  get inFlight(): { messages: number; bytes: number } {
    return { messages: this.#inFlight.messages, bytes: this.#inFlight.bytes };
  }

  /**
   * Runs until `stop` aborts (or, with `drain`, until the queue is empty). After `stop`, batches
   * already received get `shutdownTimeoutMs` to commit; what is left is made visible again.
   */
  async run(stop: AbortSignal): Promise<PipelineStats> {
    const receiving = new AbortController();
    let deadline: NodeJS.Timeout | undefined;
    const onStop = () => {
      receiving.abort();
      deadline = setTimeout(() => this.#hardStop.abort(), this.#options.shutdownTimeoutMs);
    };
    if (stop.aborted) onStop();
    else stop.addEventListener('abort', onStop, { once: true });
    const halfTimeoutMs = this.#options.visibilityTimeoutSeconds * 500;
    const beats = setInterval(() => this.#beatDue(), Math.min(1_000, Math.max(50, halfTimeoutMs / 4)));
    try {
      const loops = Array.from({ length: this.#options.receiveConcurrency }, () => this.#receiveLoop(receiving.signal));
      const writers = Array.from({ length: this.#options.writeConcurrency }, () => this.#writeLoop());
      const watcher = this.#options.drain ? this.#watchDrain(receiving) : Promise.resolve();
      await Promise.all(loops);
      receiving.abort();
      this.#receivingDone = true;
      this.#wake();
      await Promise.all(writers);
      await watcher;
      return this.stats;
    } finally {
      stop.removeEventListener('abort', onStop);
      clearTimeout(deadline);
      clearInterval(beats);
    }
  }

  async #receiveLoop(receiving: AbortSignal): Promise<void> {
    const { queue, log, health } = this.deps;
    let failures = 0;
    while (!receiving.aborted) {
      // Room for a full receive is taken before asking; what the receive does not fill is given back.
      if (!(await this.#inFlight.acquire(SQS_MAX_BATCH, receiving))) break;
      let messages: QueueMessage[] = [];
      try {
        messages = await queue.receive({
          maxMessages: SQS_MAX_BATCH,
          waitTimeSeconds: this.#options.waitTimeSeconds,
          visibilityTimeoutSeconds: this.#options.receiveVisibilityTimeoutSeconds,
          signal: receiving,
        });
        failures = 0;
        health?.report('sqs', true);
      } catch (err) {
        this.#inFlight.release(SQS_MAX_BATCH);
        if (receiving.aborted) break;
        failures += 1;
        const delayMs = backoffMs(failures, this.#options.retryBaseDelayMs, this.#options.retryMaxDelayMs);
        health?.report('sqs', false, describeError(err));
        log.warn({ err: describeError(err), attempt: failures, delayMs: Math.round(delayMs) }, 'receive failed; backing off');
        await sleep(delayMs, receiving);
        continue;
      }
      this.#inFlight.release(SQS_MAX_BATCH);
      if (messages.length === 0) continue;
      this.#accept(messages);
    }
  }

  /** Transforms a receive's messages and queues them for a writer; #beatDue keeps them invisible meanwhile. */
  #accept(messages: readonly QueueMessage[]): void {
    const { masker, log } = this.deps;
    this.stats.received += messages.length;
    const outcomes = messages.map((message) => this.#outcome(message, masker));
    for (const outcome of outcomes) {
      if (outcome.kind === 'rejected') log.warn({ messageId: outcome.message.messageId, reason: outcome.reason }, 'message rejected');
    }
    const received: Received = {
      messages,
      outcomes,
      bytes: messages.reduce((sum, m) => sum + Buffer.byteLength(m.body), 0),
      receivedAtMs: Date.now(),
      nextBeatAt: performance.now() + this.#options.visibilityTimeoutSeconds * 500,
      beat: undefined,
      settled: false,
    };
    this.#held.add(received);
    this.#inFlight.add(messages.length, received.bytes);
    this.#pending.push(received);
    this.#pendingMessages += messages.length;
    this.#wake();
  }

  #wake(): void {
    const waiters = this.#wakeWriters;
    this.#wakeWriters = [];
    for (const wake of waiters) wake();
  }

  /** Resolves on the next received batch, the end of receiving, or after `timeoutMs`. */
  async #waitForWork(timeoutMs?: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = timeoutMs === undefined ? undefined : setTimeout(resolve, timeoutMs);
      this.#wakeWriters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /**
   * Gathers received batches into one transaction of up to `maxBatchMessages`, waiting at most
   * `flushIntervalMs` for company, and commits it. Ends when receiving has ended and nothing
   * is pending.
   */
  async #writeLoop(): Promise<void> {
    const { maxBatchMessages, flushIntervalMs } = this.#options;
    for (;;) {
      const oldest = this.#pending[0];
      if (oldest === undefined) {
        if (this.#receivingDone) return;
        await this.#waitForWork();
        continue;
      }
      const waitedMs = Date.now() - oldest.receivedAtMs;
      if (this.#pendingMessages < maxBatchMessages && !this.#receivingDone && waitedMs < flushIntervalMs) {
        await this.#waitForWork(flushIntervalMs - waitedMs);
        continue;
      }
      const group: Received[] = [];
      let size = 0;
      while (this.#pending[0] !== undefined && (group.length === 0 || size + this.#pending[0].messages.length <= maxBatchMessages)) {
        const next = this.#pending.shift() as Received;
        group.push(next);
        size += next.messages.length;
      }
      this.#pendingMessages -= size;
      await this.#handle(group);
    }
  }

  async #handle(group: readonly Received[]): Promise<void> {
    const { log } = this.deps;
    const started = performance.now();
    const batch: Batch = { messages: group.flatMap((r) => r.messages), committed: new Set(), forwarded: new Set() };
    try {
      let committed: boolean;
      try {
        committed = !this.#hardStop.signal.aborted && (await this.#commit(batch, group.flatMap((r) => r.outcomes)));
      } finally {
        for (const received of group) received.settled = true;
        await Promise.all(group.map((r) => r.beat));
      }
      if (!committed) {
        this.stats.released += batch.messages.length;
        await this.#release(batch.messages);
        return;
      }
      this.stats.batches += 1;
      await this.#acknowledge(batch.messages);
      log.info({ messages: batch.messages.length, receives: group.length, durationMs: Math.round(performance.now() - started) }, 'batch committed');
    } finally {
      for (const received of group) {
        this.#inFlight.remove(received.messages.length, received.bytes);
        this.#held.delete(received);
      }
    }
  }

  #outcome(message: QueueMessage, masker: Masker): Outcome {
    if (message.receiveCount > this.#options.maxReceiveCount) {
      this.stats.poisoned += 1;
      const last = this.#lastErrors.get(message.messageId);
      const reason =
        `received ${message.receiveCount} times without being committed (limit ${this.#options.maxReceiveCount})` +
        (last === undefined ? '' : `; last error: ${last}`);
      return reject(message, reason, masker);
    }
    return transform(message, masker);
  }

  /** Writes the batch, retrying transient failures until it commits or a hard stop. */
  async #commit(batch: Batch, outcomes: readonly Outcome[]): Promise<boolean> {
    const { log, health } = this.deps;
    for (let attempt = 1; ; attempt += 1) {
      try {
        await this.#write(batch, outcomes);
        health?.report('postgres', true);
        return true;
      } catch (err) {
        this.stats.writeFailures += 1;
        const reason = describeError(err);
        for (const message of batch.messages) this.#rememberError(message.messageId, reason);
        const action = classifyFailure(err);
        if (action === 'retry') health?.report(err instanceof SourceError ? 'sqs' : 'postgres', false, reason);
        if (action === 'release' || this.#hardStop.signal.aborted) {
          log.error({ err: reason, attempt, messages: batch.messages.length }, 'batch not committed; its messages go back to the queue');
          return false;
        }
        const delayMs = backoffMs(attempt, this.#options.retryBaseDelayMs, this.#options.retryMaxDelayMs);
        log.warn({ err: reason, attempt, delayMs: Math.round(delayMs), messages: batch.messages.length }, 'batch write failed; retrying');
        await sleep(delayMs, this.#hardStop.signal);
      }
    }
  }

  /**
   * Commits outcomes not committed yet. When Postgres refuses a batch for a reason a retry
   * cannot fix (a constraint, a narrower column), the batch is split in halves until the rows
   * it refuses are found; those become rejections carrying the database's reason, and the
   * others commit.
   */
  async #write(batch: Batch, all: readonly Outcome[]): Promise<void> {
    const outcomes = all.filter((o) => !batch.committed.has(o.message.messageId));
    if (outcomes.length === 0) return;
    await this.#forward(batch, outcomes);
    try {
      const result = await this.deps.sink.write(outcomes);
      this.stats.written += result.written;
      this.stats.rejected += result.rejected;
      this.stats.duplicates += result.duplicates;
      for (const outcome of outcomes) batch.committed.add(outcome.message.messageId);
    } catch (err) {
      if (!(err instanceof SinkError) || err.retryable) throw err;
      if (outcomes.length > 1) {
        const middle = Math.ceil(outcomes.length / 2);
        await this.#write(batch, outcomes.slice(0, middle));
        await this.#write(batch, outcomes.slice(middle));
        return;
      }
      const [only] = outcomes;
      // A rejection that cannot be stored has nowhere left to go: hand it back to the queue.
      if (only === undefined || only.kind === 'rejected') throw err;
      this.deps.log.warn({ messageId: only.message.messageId, err: err.message }, 'row refused by Postgres; rejecting it');
      await this.#write(batch, [reject(only.message, err.message, this.deps.masker)]);
    }
  }

  /** Sends rejections to the dead-letter queue before they are committed and deleted. */
  async #forward(batch: Batch, outcomes: readonly Outcome[]): Promise<void> {
    const { deadLetters } = this.deps;
    if (deadLetters === undefined) return;
    const letters = outcomes.flatMap((o) =>
      o.kind === 'rejected' && !batch.forwarded.has(o.message.messageId)
        ? [{ messageId: o.message.messageId, body: o.message.body, reason: o.reason }]
        : [],
    );
    if (letters.length === 0) return;
    await deadLetters.forward(letters);
    for (const letter of letters) batch.forwarded.add(letter.messageId);
    this.stats.deadLettered += letters.length;
  }

  /**
   * Keeps held batches invisible while they wait and are written: one timer for all of them
   * extends each batch by the visibility timeout again at half of it, never past SQS's 12 hours
   * from the receive.
   */
  #beatDue(): void {
    const now = performance.now();
    for (const received of this.#held) {
      if (received.settled || received.beat !== undefined || received.nextBeatAt > now) continue;
      received.nextBeatAt = now + this.#options.visibilityTimeoutSeconds * 500;
      received.beat = this.#extendVisibility(received).finally(() => {
        received.beat = undefined;
      });
    }
  }

  async #extendVisibility(received: Received): Promise<void> {
    const { queue, log } = this.deps;
    const { messages } = received;
    const elapsedSeconds = Math.ceil((Date.now() - received.receivedAtMs) / 1000);
    const extendSeconds = Math.min(this.#options.visibilityTimeoutSeconds, MAX_VISIBILITY_SECONDS - elapsedSeconds);
    if (extendSeconds <= 0) {
      received.settled = true;
      log.warn({ messages: messages.length }, 'batch reached the 12-hour visibility limit; SQS may deliver it again');
      return;
    }
    try {
      const failed = await queue.changeVisibility(messages, extendSeconds);
      this.stats.visibilityExtensions += messages.length - failed.length;
      if (failed.length > 0) log.warn({ messageIds: failed }, 'visibility extension refused');
    } catch (err) {
      log.warn({ err: describeError(err) }, 'visibility extension failed');
    }
  }

  /** Deletes committed messages. A delete that still fails only means a redelivery the ledger skips. */
  async #acknowledge(messages: readonly MessageRef[]): Promise<void> {
    const { queue, log } = this.deps;
    for (let attempt = 1; ; attempt += 1) {
      try {
        const failed = await queue.delete(messages);
        if (failed.length > 0) {
          this.stats.deleteFailures += failed.length;
          log.warn({ messageIds: failed }, 'delete refused; the ledger will skip these on redelivery');
        }
        return;
      } catch (err) {
        if (classifyFailure(err) === 'release' || attempt >= 3) {
          this.stats.deleteFailures += messages.length;
          log.warn({ err: describeError(err), messages: messages.length }, 'delete failed; the ledger will skip these on redelivery');
          return;
        }
        await sleep(backoffMs(attempt, this.#options.retryBaseDelayMs, this.#options.retryMaxDelayMs), this.#hardStop.signal);
      }
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

  #rememberError(messageId: string, reason: string): void {
    this.#lastErrors.delete(messageId);
    this.#lastErrors.set(messageId, reason);
    if (this.#lastErrors.size > LAST_ERRORS_KEPT) {
      const oldest = this.#lastErrors.keys().next();
      if (!oldest.done) this.#lastErrors.delete(oldest.value);
    }
  }

  async #watchDrain(receiving: AbortController): Promise<void> {
    const { queue, log } = this.deps;
    while (!receiving.signal.aborted) {
      await sleep(this.#options.drainCheckIntervalMs, receiving.signal);
      if (receiving.signal.aborted || this.#held.size > 0) continue;
      try {
        const depth = await queue.depth();
        // A message we hold counts as in flight until it is deleted, after its commit, so
        // an all-zero depth means every message sent so far is committed.
        if (depth.visible + depth.inFlight + depth.delayed === 0 && this.#held.size === 0) {
          log.info('queue is empty; draining done');
          receiving.abort();
        }
      } catch (err) {
        log.warn({ err: describeError(err) }, 'could not read the queue depth');
      }
    }
  }
}
