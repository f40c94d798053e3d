/**
 * The drain watcher: ends a `--drain` run once the queue is empty, or gives it up once a
 * dependency has failed for `unreachableTimeoutMs`.
 */
import { classify, type DependencyState, type Failure } from '../failure.js';
import type { Logger } from '../observability/logger.js';
import type { Queue } from '../source/queue.js';

export interface DrainOptions {
  /** How often the queue depth and the dependencies are checked when nothing else prompts it. */
  readonly drainCheckIntervalMs: number;
  /** The pause after an empty receive; one depth check per pause is enough. */
  readonly drainPollIntervalMs: number;
  /** Give up once a dependency has failed this long without a success. */
  readonly unreachableTimeoutMs: number;
}

export interface DrainDeps {
  readonly queue: Pick<Queue, 'depth'>;
  readonly log: Logger;
  readonly clock: () => number;
  readonly states: readonly DependencyState[];
  /** Receives held (not yet deleted or handed back) right now. */
  readonly held: () => number;
}

/** How a drain ended: the queue is empty, or a dependency failed too long. */
export type DrainEnd = { readonly kind: 'drained' } | { readonly kind: 'gave-up'; readonly failure: Failure; readonly forMs: number } | { readonly kind: 'stopped' };

export class DrainWatcher {
  /** A receive came back empty, and none has brought messages since. */
  #emptyReceive = false;
  /** Something happened that may end the drain; the watcher looks when it is next free. */
  #prompted = false;
  #wake: (() => void) | undefined;

  constructor(
    private readonly deps: DrainDeps,
    private readonly options: DrainOptions,
  ) {}

  /** A receive brought messages: the queue is not known to be empty. */
  received(): void {
    this.#emptyReceive = false;
  }

  /** A receive came back empty. */
  emptyReceive(): void {
    this.#emptyReceive = true;
    this.prompt();
  }

  /** Look now: a receive came back empty, or nothing is held any more. */
  prompt(): void {
    this.#prompted = true;
    this.#wake?.();
  }

  /**
   * Resolves once nothing is held, a receive has come back empty and the queue reports no
   * visible, in-flight or delayed message; or once a dependency has failed for
   * `unreachableTimeoutMs`; or when `signal` aborts. It looks as soon as it is prompted, and every
   * `drainCheckIntervalMs` in any case.
   */
  async watch(signal: AbortSignal): Promise<DrainEnd> {
    const { queue, log, clock, states, held } = this.deps;
    const sqs = states.find((s) => s.dependency === 'sqs');
    let lastCheck = Number.NEGATIVE_INFINITY;
    for (;;) {
      await this.#nextPrompt(signal);
      if (signal.aborted) return { kind: 'stopped' };
      const failing = this.#failingTooLong();
      if (failing !== undefined) return failing;
      if (held() > 0 || !this.#emptyReceive) continue;
      // While idle, empty receives prompt often; one depth check per poll interval is enough.
      if (clock() - lastCheck < this.options.drainPollIntervalMs) continue;
      lastCheck = clock();
      let empty: boolean;
      try {
        const depth = await queue.depth();
        sqs?.succeeded();
        empty = depth.visible + depth.inFlight + depth.delayed === 0;
      } catch (err) {
        sqs?.failed(classify(err, 'sqs'), 'could not read the queue depth');
        continue;
      }
      // A message held counts as in flight until it is deleted, after its commit, so an
      // all-zero depth means every message sent so far is committed.
      if (empty && held() === 0 && this.#emptyReceive) {
        log.info('queue is empty; draining done');
        return { kind: 'drained' };
      }
    }
  }

  #failingTooLong(): DrainEnd | undefined {
    for (const state of this.deps.states) {
      const failure = state.failure;
      const forMs = state.failingForMs();
      if (failure === undefined || forMs < this.options.unreachableTimeoutMs) continue;
      this.deps.log.error(
        { dependency: failure.dependency, kind: failure.kind, err: failure.reason, failingForMs: Math.round(forMs) },
        'giving up the drain: a dependency has failed for longer than the unreachable timeout; held messages go back to the queue',
      );
      return { kind: 'gave-up', failure, forMs };
    }
    return undefined;
  }

  /** Resolves when prompted (at once if prompted meanwhile), after the check interval, or when `signal` aborts. */
  async #nextPrompt(signal: AbortSignal): Promise<void> {
    if (this.#prompted || signal.aborted) {
      this.#prompted = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, this.options.drainCheckIntervalMs);
      signal.addEventListener('abort', done, { once: true });
      this.#wake = done;
    });
    this.#prompted = false;
  }
}
