/**
 * The pipeline: receive loops take messages from the queue, a batcher gathers them into
 * transactions, writers commit them, and only then are they deleted from the queue.
 *
 * Deleting after the commit, with the ledger skipping ids already committed, is what makes the
 * end state exact: a crash before the commit loses nothing (the messages reappear), a crash
 * after it duplicates nothing (the redelivered ids are skipped). This module only wires the
 * units that keep that promise under pressure, each in src/pipeline/ with one job: receive
 * (read loops under the in-flight bounds), batch, write (the commit algorithm of src/commit.ts
 * held through failures as src/failure.ts says, and poison), acknowledge (delete, hand back),
 * refresh (visibility heartbeats) and drain.
 *
 * Shutdown: `stop` ends receiving (receives under way are left to answer, see receive.ts);
 * batches held get `shutdownTimeoutMs` to commit; then the hard stop aborts the calls in flight
 * and cancels running queries, and what is left is handed back once every receive has answered,
 * so that no receive still open can take it back.
 *
 * Every interval here is measured on a monotonic clock (performance.now by default), never on
 * the wall clock, which can step back or forward.
 */
import { describeError, UnavailableError } from './errors.js';
import { DEPENDENCY_NAMES, DependencyState } from './failure.js';
import { InFlight } from './in-flight.js';
import type { Dependency, Health } from './observability/health.js';
import type { Logger } from './observability/logger.js';
import { Acknowledger } from './pipeline/acknowledge.js';
import { Batcher } from './pipeline/batch.js';
import { DrainWatcher, type DrainEnd } from './pipeline/drain.js';
import type { Held } from './pipeline/held.js';
import { receiveLoop } from './pipeline/receive.js';
import { VisibilityRefresher } from './pipeline/refresh.js';
import { commitHeld, PoisonJudge, type WriterDeps } from './pipeline/write.js';
import type { Sink } from './sink/postgres.js';
import type { DeadLetterQueue, Queue, QueueMessage } from './source/queue.js';
import type { Masker } from './transform/mask.js';

export { sleep } from './pipeline/held.js';
export { MAX_VISIBILITY_SECONDS } from './pipeline/refresh.js';

export interface PipelineOptions {
  readonly receiveConcurrency: number;
  /** The long-poll wait; capped so that every poll answers within the shutdown timeout (`longPollSeconds`). */
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
  /** Rejections whose send to the dead-letter queue got no answer: maybe forwarded, not sent again. */
  unconfirmed: number;
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
  /** Cancels the sink's statements under way; called by the hard stop. */
  readonly cancelQueries?: (() => Promise<void>) | undefined;
  /** Told of every batch committed, before its messages are deleted. */
  readonly onCommitted?: ((messages: readonly QueueMessage[]) => void) | undefined;
}

/** After the hard stop, how long a receive that has not answered yet is still waited for. */
const RECEIVE_CUT_GRACE_MS = 500;
/** How long handing messages back may take once the shutdown timeout is over. */
const RELEASE_DEADLINE_MS = 1_000;

/**
 * The long-poll wait used: `waitTimeSeconds`, but never past the shutdown timeout less a second
 * (at least 1 s), so that a poll under way when a stop comes answers before the hard stop.
 */
export function longPollSeconds(waitTimeSeconds: number, shutdownTimeoutMs: number): number {
  return Math.min(waitTimeSeconds, Math.max(1, Math.floor(shutdownTimeoutMs / 1000) - 1));
}

type Settings = Required<Omit<PipelineOptions, 'receiveVisibilityTimeoutSeconds'>> & Pick<PipelineOptions, 'receiveVisibilityTimeoutSeconds'>;

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
    unconfirmed: 0,
  };
  readonly #options: Settings;
  readonly #inFlight: InFlight;
  readonly #clock: () => number;
  readonly #states: Readonly<Record<Dependency, DependencyState>>;
  readonly #poison: PoisonJudge;
  readonly #batcher: Batcher;
  readonly #acknowledger: Acknowledger;
  readonly #refresher: VisibilityRefresher;
  readonly #drain: DrainWatcher;
  readonly #writer: WriterDeps;
  /** No receive is issued after it. */
  readonly #receiving = new AbortController();
  /** Aborted when a graceful stop runs out of time: retries end, calls in flight are aborted, batches are handed back. */
  readonly #hardStop = new AbortController();
  /** Cuts receives under way. */
  readonly #cut = new AbortController();
  /** Receives held: received and not yet deleted or handed back. */
  #held = 0;
  /** Resolves once every receive loop has ended, so no receive is open. */
  #receivesEnded: Promise<void> = Promise.resolve();

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
    const { log, queue } = deps;
    const clock = deps.clock ?? (() => performance.now());
    this.#clock = clock;
    this.#inFlight = new InFlight(this.#options.maxInFlightMessages, this.#options.maxInFlightBytes);
    const context = { log, health: deps.health, clock };
    this.#states = {
      postgres: new DependencyState('postgres', context),
      sqs: new DependencyState('sqs', context),
      'dead-letter-queue': new DependencyState('dead-letter-queue', context),
    };
    this.#poison = new PoisonJudge(this.#options.maxReceiveCount, this.stats);
    this.#batcher = new Batcher(this.#options, clock);
    this.#acknowledger = new Acknowledger({ queue, log, tally: this.stats }, this.#options);
    this.#refresher = new VisibilityRefresher({ queue, log, clock, tally: this.stats }, this.#options.visibilityTimeoutSeconds, this.#hardStop.signal);
    this.#drain = new DrainWatcher({ queue, log, clock, states: Object.values(this.#states), held: () => this.#held }, this.#options);
    this.#writer = { sink: deps.sink, masker: deps.masker, log, deadLetters: deps.deadLetters, states: this.#states, tally: this.stats, poison: this.#poison };
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
    const options = this.#options;
    const waitTimeSeconds = longPollSeconds(options.waitTimeSeconds, options.shutdownTimeoutMs);
    const timers: NodeJS.Timeout[] = [];
    const onStop = () => {
      this.#receiving.abort();
      timers.push(setTimeout(() => this.#stopHard(), options.shutdownTimeoutMs));
      // A receive answers within its wait; one that has not by then (a stuck connection) is cut.
      const waitMs = options.drain ? 0 : waitTimeSeconds * 1000;
      timers.push(setTimeout(() => this.#cut.abort(), Math.max(options.shutdownTimeoutMs, waitMs) + RECEIVE_CUT_GRACE_MS));
    };
    if (stop.aborted) onStop();
    else stop.addEventListener('abort', onStop, { once: true });
    const refreshing = setInterval(() => this.#refresher.tick(), this.#refresher.tickMs);
    try {
      const receiveOptions = { ...options, waitTimeSeconds, visibilityTimeoutSeconds: options.receiveVisibilityTimeoutSeconds };
      const receiveDeps = {
        queue: this.deps.queue,
        inFlight: this.#inFlight,
        sqs: this.#states.sqs,
        accept: (messages: QueueMessage[]) => this.#accept(messages),
        onEmpty: () => this.#drain.emptyReceive(),
        onAnswer: (full: boolean) => this.#batcher.answered(full),
      };
      const signals = { stop: this.#receiving.signal, cut: this.#cut.signal };
      const loops = Array.from({ length: options.receiveConcurrency }, () => receiveLoop(receiveDeps, receiveOptions, signals));
      this.#receivesEnded = Promise.all(loops).then(() => undefined);
      const writers = Array.from({ length: options.writeConcurrency }, () => this.#writeLoop());
      const watcher = options.drain ? this.#watchDrain() : Promise.resolve(undefined);
      await this.#receivesEnded;
      this.#receiving.abort();
      this.#batcher.end();
      await Promise.all(writers);
      const end = await watcher;
      if (end?.kind === 'gave-up') {
        const { failure, forMs } = end;
        const what = failure.kind === 'broken' ? 'refused the work' : 'could not be reached';
        throw new UnavailableError(`${DEPENDENCY_NAMES[failure.dependency]} ${what} for ${Math.round(forMs / 1000)} s (--unreachable-timeout-seconds): ${failure.reason}`);
      }
      return this.stats;
    } finally {
      stop.removeEventListener('abort', onStop);
      for (const timer of timers) clearTimeout(timer);
      clearInterval(refreshing);
    }
  }

  /** Ends a drain when the watcher says so; a drain given up stops hard at once. */
  async #watchDrain(): Promise<DrainEnd> {
    const end = await this.#drain.watch(this.#receiving.signal);
    this.#receiving.abort();
    if (end.kind === 'gave-up') {
      this.#stopHard();
      this.#cut.abort();
    }
    return end;
  }

  /** The shutdown timeout is over: retries end, calls in flight are aborted and statements cancelled. */
  #stopHard(): void {
    if (this.#hardStop.signal.aborted) return;
    this.#hardStop.abort();
    this.deps.cancelQueries?.().catch((err: unknown) => this.deps.log.warn({ err: describeError(err) }, 'could not cancel the statements under way'));
  }

  /** Transforms a receive's messages and queues them for a writer; the refresher keeps them invisible meanwhile. */
  #accept(messages: readonly QueueMessage[]): void {
    const { masker, log } = this.deps;
    this.stats.received += messages.length;
    this.#drain.received();
    const outcomes = messages.map((message) => this.#poison.outcome(message, masker));
    for (const outcome of outcomes) {
      if (outcome.kind === 'rejected') log.warn({ messageId: outcome.message.messageId, reason: outcome.reason }, 'message rejected');
    }
    const held: Held = { messages, outcomes, bytes: messages.reduce((sum, m) => sum + Buffer.byteLength(m.body), 0), receivedAt: this.#clock() };
    this.#held += 1;
    this.#inFlight.add(messages.length, held.bytes);
    this.#refresher.track(held);
    this.#batcher.push(held);
  }

  async #writeLoop(): Promise<void> {
    for (let group = await this.#batcher.next(); group !== undefined; group = await this.#batcher.next()) await this.#handle(group);
  }

  /** Commits a group, then deletes it; or, after the hard stop, hands it back. */
  async #handle(group: readonly Held[]): Promise<void> {
    const { log } = this.deps;
    const started = this.#clock();
    const messages = group.flatMap((h) => h.messages);
    try {
      let committed: boolean;
      try {
        committed = await commitHeld(this.#writer, group.flatMap((h) => h.outcomes), this.#options, this.#hardStop.signal);
      } finally {
        await this.#refresher.untrack(group);
      }
      if (!committed) {
        // A receive still open would take back what is handed back: wait until all have answered.
        await this.#receivesEnded;
        await this.#acknowledger.release(messages, AbortSignal.timeout(RELEASE_DEADLINE_MS));
        return;
      }
      this.stats.batches += 1;
      this.deps.onCommitted?.(messages);
      await this.#acknowledger.delete(messages, this.#hardStop.signal);
      log.info({ messages: messages.length, receives: group.length, durationMs: Math.round(this.#clock() - started) }, 'batch committed');
    } finally {
      for (const held of group) this.#inFlight.remove(held.messages.length, held.bytes);
      this.#held -= group.length;
      if (this.#held === 0) this.#drain.prompt();
    }
  }
}
