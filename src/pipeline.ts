/**
 * The pipeline: receive loops that take up to 10 messages from the queue, transform them,
 * commit them, and only then delete them from the queue.
 *
 * Deleting after the commit, with the ledger skipping ids already committed, is what makes the
 * end state exact: a crash before the commit loses nothing (the messages reappear), a crash
 * after it duplicates nothing (the redelivered ids are skipped). Everything else here keeps
 * that promise under pressure: visibility heartbeats for slow writes, back-pressure, the failure
 * policy (src/failure.ts), the commit algorithm (src/commit.ts), poison limits, a drain that ends
 * as soon as the queue is empty, and a bounded graceful shutdown.
 *
 * Every interval here is measured on a monotonic clock (performance.now by default), never on
 * the wall clock, which can step back or forward.
 */
import { setTimeout as sleepUntil } from 'node:timers/promises';
import { BatchCommit } from './commit.js';
import { describeError, UnavailableError } from './errors.js';
import { backoffMs, classify, DEPENDENCY_NAMES, DependencyState, type Failure } from './failure.js';
import { InFlight } from './in-flight.js';
import type { Dependency, Health } from './observability/health.js';
import type { Logger } from './observability/logger.js';
import type { Sink } from './sink/postgres.js';
import { SQS_MAX_BATCH, type DeadLetterQueue, type MessageRef, type Queue, type QueueMessage } from './source/queue.js';
import type { Masker } from './transform/mask.js';
import { reject, transform, type Outcome } from './transform/transform.js';

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
  /** With `drain`: how often the queue depth and the dependencies are checked when nothing else prompts it. */
  readonly drainCheckIntervalMs?: number;
  /** With `drain`: the pause after an empty receive before polling again. */
  readonly drainPollIntervalMs?: number;
  /** With `drain`: give up (run() rejects with UnavailableError) once a dependency has failed this long without a success. */
  readonly unreachableTimeoutMs?: number;
  readonly retryBaseDelayMs?: number;
  readonly retryMaxDelayMs?: number;
}

export interface PipelineStats {
  received: number;
  written: number;
  rejected: number;
  duplicates: number;
  batches: number;
  /** Attempts to commit a batch that failed (transient or broken) and were retried. */
  writeFailures: number;
  deleteFailures: number;
  /** Messages handed back to the queue uncommitted. */
  released: number;
  visibilityExtensions: number;
  /** Rejected because their receive count passed the limit. */
  poisoned: number;
  deadLettered: number;
  /** Rejections the dead-letter queue refuses for good (recorded in `forward_error`). */
  unforwardable: number;
}

export interface PipelineDeps {
  readonly queue: Queue;
  readonly sink: Sink;
  readonly masker: Masker;
  readonly log: Logger;
  readonly deadLetters?: DeadLetterQueue | undefined;
  readonly health?: Health | undefined;
  /** Monotonic milliseconds for every interval; performance.now by default. */
  readonly clock?: (() => number) | undefined;
}

/** Resolves after `ms`, or at once when `signal` aborts; never rejects. */
export async function sleep(ms: number, signal: AbortSignal): Promise<void> {
  await sleepUntil(ms, undefined, { signal }).catch(() => undefined);
}

/** The messages of one receive, from the receive until they are deleted or handed back. */
interface Received {
  readonly messages: readonly QueueMessage[];
  readonly outcomes: readonly Outcome[];
  readonly bytes: number;
  /** Monotonic time of the receive, for the flush interval and SQS's 12-hour limit. */
  readonly receivedAt: number;
  /** Monotonic time the next visibility extension is due. */
  nextBeatAt: number;
  /** The extension under way, if any. */
  beat: Promise<void> | undefined;
  /** No more extensions: committed, handed back, or at the 12-hour limit. */
  settled: boolean;
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
    unforwardable: 0,
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
  readonly #clock: () => number;
  readonly #states: Readonly<Record<Dependency, DependencyState>>;
  /** Aborted when a graceful stop runs out of time: retries end and batches are handed back. */
  readonly #hardStop = new AbortController();
  /** The last failure seen per message id, for the reason of a poison rejection. */
  readonly #lastErrors = new Map<string, string>();
  /** A receive came back empty, and none has brought messages since. */
  #emptyReceive = false;
  /** Something happened that may end a drain; the watcher looks when it is next free. */
  #drainPrompted = false;
  #promptDrain: (() => void) | undefined;
  /** Why a drain gave up, if it did. */
  #gaveUp: { readonly failure: Failure; readonly forMs: number } | undefined;

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
      drainPollIntervalMs: 100,
      unreachableTimeoutMs: 60_000,
      retryBaseDelayMs: 200,
      retryMaxDelayMs: 30_000,
      ...options,
    };
    this.#inFlight = new InFlight(this.#options.maxInFlightMessages, this.#options.maxInFlightBytes);
    const clock = deps.clock ?? (() => performance.now());
    this.#clock = clock;
    const context = { log: deps.log, health: deps.health, clock };
    this.#states = {
      postgres: new DependencyState('postgres', context),
      sqs: new DependencyState('sqs', context),
      'dead-letter-queue': new DependencyState('dead-letter-queue', context),
    };
  }

  /** Messages and bytes held right now. */
  get inFlight(): { messages: number; bytes: number } {
    return { messages: this.#inFlight.messages, bytes: this.#inFlight.bytes };
  }

  /**
   * Runs until `stop` aborts (or, with `drain`, until the queue is empty). After `stop`, batches
   * already received get `shutdownTimeoutMs` to commit; what is left is made visible again. A
   * drain rejects with an UnavailableError, after handing its batches back, once a dependency
   * has failed for `unreachableTimeoutMs`.
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
      if (this.#gaveUp !== undefined) {
        const { failure, forMs } = this.#gaveUp;
        const what = failure.kind === 'broken' ? 'refused the work' : 'could not be reached';
        throw new UnavailableError(`${DEPENDENCY_NAMES[failure.dependency]} ${what} for ${Math.round(forMs / 1000)} s (--unreachable-timeout-seconds): ${failure.reason}`);
      }
      return this.stats;
    } finally {
      stop.removeEventListener('abort', onStop);
      clearTimeout(deadline);
      clearInterval(beats);
    }
  }

  async #receiveLoop(receiving: AbortSignal): Promise<void> {
    const { queue } = this.deps;
    const { drain } = this.#options;
    const sqs = this.#states.sqs;
    let failures = 0;
    while (!receiving.aborted) {
      // Room for a full receive is taken before asking; what the receive does not fill is given back.
      if (!(await this.#inFlight.acquire(SQS_MAX_BATCH, receiving))) break;
      let messages: QueueMessage[];
      try {
        messages = await queue.receive({
          maxMessages: SQS_MAX_BATCH,
          // A drain polls briefly: a long poll still open when the drain ends could be handed
          // messages sent after it, which would then stay hidden for their visibility timeout.
          waitTimeSeconds: drain ? 0 : this.#options.waitTimeSeconds,
          visibilityTimeoutSeconds: this.#options.receiveVisibilityTimeoutSeconds,
          signal: receiving,
        });
        failures = 0;
        sqs.succeeded();
      } catch (err) {
        this.#inFlight.release(SQS_MAX_BATCH);
        if (receiving.aborted) break;
        failures += 1;
        sqs.failed(classify(err, 'sqs'), 'receive failed; backing off', { attempt: failures });
        await sleep(backoffMs(failures, this.#options.retryBaseDelayMs, this.#options.retryMaxDelayMs), receiving);
        continue;
      }
      this.#inFlight.release(SQS_MAX_BATCH);
      if (messages.length > 0) {
        this.#emptyReceive = false;
        this.#accept(messages);
        continue;
      }
      if (drain) {
        this.#emptyReceive = true;
        this.#prompt();
        await sleep(this.#options.drainPollIntervalMs, receiving);
      }
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
    const now = this.#clock();
    const received: Received = {
      messages,
      outcomes,
      bytes: messages.reduce((sum, m) => sum + Buffer.byteLength(m.body), 0),
      receivedAt: now,
      nextBeatAt: now + this.#options.visibilityTimeoutSeconds * 500,
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
      const waitedMs = this.#clock() - oldest.receivedAt;
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
    const started = this.#clock();
    const messages = group.flatMap((r) => r.messages);
    try {
      let committed: boolean;
      try {
        committed = await this.#commit(messages, group.flatMap((r) => r.outcomes));
      } finally {
        for (const received of group) received.settled = true;
        await Promise.all(group.map((r) => r.beat));
      }
      if (!committed) {
        this.stats.released += messages.length;
        await this.#release(messages);
        return;
      }
      this.stats.batches += 1;
      await this.#acknowledge(messages);
      log.info({ messages: messages.length, receives: group.length, durationMs: Math.round(this.#clock() - started) }, 'batch committed');
    } finally {
      for (const received of group) {
        this.#inFlight.remove(received.messages.length, received.bytes);
        this.#held.delete(received);
      }
      if (this.#held.size === 0) this.#prompt();
    }
  }

  #outcome(message: QueueMessage, masker: Masker): Outcome {
    // Poison is the message's own doing (its receive count), never a dependency's.
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

  /**
   * Commits a batch with the shared commit algorithm, holding it through failures as the
   * failure policy says: transient and broken failures alike keep the messages (the heartbeat
   * extends them) and back off with jitter up to the cap. Resolves false only when a hard stop
   * ends the wait; the caller then hands the messages back.
   */
  async #commit(messages: readonly QueueMessage[], outcomes: readonly Outcome[]): Promise<boolean> {
    const { sink, masker, log, deadLetters } = this.deps;
    const commit = new BatchCommit(outcomes, { sink, masker, log, deadLetters });
    try {
      for (let attempt = 1; !this.#hardStop.signal.aborted; attempt += 1) {
        try {
          await commit.attempt();
          this.#states.postgres.succeeded();
          if (commit.tally.deadLettered + commit.tally.unforwardable > 0) this.#states['dead-letter-queue'].succeeded();
          return true;
        } catch (err) {
          this.stats.writeFailures += 1;
          const failure = classify(err, 'postgres');
          for (const outcome of commit.uncommitted) this.#rememberError(outcome.message.messageId, failure.reason);
          const message =
            failure.kind === 'broken'
              ? `${DEPENDENCY_NAMES[failure.dependency]} refuses the batch; holding it and backing off until that is fixed`
              : 'batch write failed; holding it and retrying';
          this.#states[failure.dependency].failed(failure, message, { attempt, messages: messages.length });
          await sleep(backoffMs(attempt, this.#options.retryBaseDelayMs, this.#options.retryMaxDelayMs), this.#hardStop.signal);
        }
      }
      log.error({ messages: messages.length }, 'batch not committed before the deadline; its messages go back to the queue');
      return false;
    } finally {
      const { tally } = commit;
      this.stats.written += tally.written;
      this.stats.rejected += tally.rejected;
      this.stats.duplicates += tally.duplicates;
      this.stats.deadLettered += tally.deadLettered;
      this.stats.unforwardable += tally.unforwardable;
    }
  }

  /**
   * Keeps held batches invisible while they wait and are written: one timer for all of them
   * extends each batch by the visibility timeout again at half of it, never past SQS's 12 hours
   * from the receive.
   */
  #beatDue(): void {
    const now = this.#clock();
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
    const elapsedSeconds = Math.ceil((this.#clock() - received.receivedAt) / 1000);
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

  /**
   * Deletes committed messages: a transient failure is tried again twice, anything else is left
   * to the ledger, which skips the redelivery.
   */
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
        if (classify(err, 'sqs').kind !== 'transient' || attempt >= 3) {
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

  /** Tells the drain watcher to look now: a receive came back empty, or nothing is held any more. */
  #prompt(): void {
    this.#drainPrompted = true;
    this.#promptDrain?.();
  }

  /** Resolves when prompted (at once if prompted meanwhile), after `timeoutMs`, or when `signal` aborts. */
  async #nextDrainPrompt(timeoutMs: number, signal: AbortSignal): Promise<void> {
    if (this.#drainPrompted || signal.aborted) {
      this.#drainPrompted = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.#promptDrain = undefined;
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal.addEventListener('abort', done, { once: true });
      this.#promptDrain = done;
    });
    this.#drainPrompted = false;
  }

  /**
   * Ends a drain: once nothing is held, a receive has come back empty and the queue reports no
   * visible, in-flight or delayed message, receiving stops. It looks as soon as either of the
   * first two happens, and every `drainCheckIntervalMs` in any case, when it also gives up if a
   * dependency has failed for `unreachableTimeoutMs`.
   */
  async #watchDrain(receiving: AbortController): Promise<void> {
    const { queue, log } = this.deps;
    const sqs = this.#states.sqs;
    let lastCheck = Number.NEGATIVE_INFINITY;
    while (!receiving.signal.aborted) {
      await this.#nextDrainPrompt(this.#options.drainCheckIntervalMs, receiving.signal);
      if (receiving.signal.aborted) return;
      if (this.#giveUpIfFailing(receiving)) return;
      if (this.#held.size > 0 || !this.#emptyReceive) continue;
      // While idle, empty receives prompt often; one depth check per poll interval is enough.
      if (this.#clock() - lastCheck < this.#options.drainPollIntervalMs) continue;
      lastCheck = this.#clock();
      let empty: boolean;
      try {
        const depth = await queue.depth();
        sqs.succeeded();
        empty = depth.visible + depth.inFlight + depth.delayed === 0;
      } catch (err) {
        sqs.failed(classify(err, 'sqs'), 'could not read the queue depth');
        continue;
      }
      // A message we hold counts as in flight until it is deleted, after its commit, so an
      // all-zero depth means every message sent so far is committed.
      if (empty && this.#held.size === 0 && this.#emptyReceive) {
        log.info('queue is empty; draining done');
        receiving.abort();
      }
    }
  }

  /** Stops a drain whose dependency has failed too long; true if it did. */
  #giveUpIfFailing(receiving: AbortController): boolean {
    for (const state of Object.values(this.#states)) {
      const failure = state.failure;
      const forMs = state.failingForMs();
      if (failure === undefined || forMs < this.#options.unreachableTimeoutMs) continue;
      this.#gaveUp = { failure, forMs };
      this.deps.log.error(
        { dependency: failure.dependency, kind: failure.kind, err: failure.reason, failingForMs: Math.round(forMs) },
        'giving up the drain: a dependency has failed for longer than the unreachable timeout; held messages go back to the queue',
      );
      receiving.abort();
      this.#hardStop.abort();
      return true;
    }
    return false;
  }
}
