/**
 * The refresher: keeps held receives invisible while they wait and are written, extending each
 * by the visibility timeout again at half of it, never past SQS's 12 hours from the receive.
 */
import { describeError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { Queue } from '../source/queue.js';
import type { Held } from './held.js';

/** SQS keeps a message invisible for at most 12 hours after it was received. */
export const MAX_VISIBILITY_SECONDS = 43_200;

interface Tracked {
  readonly held: Held;
  /** Monotonic time the next extension is due. */
  nextAt: number;
  /** The extension under way, if any. */
  call: Promise<void> | undefined;
}

export interface RefresherDeps {
  readonly queue: Pick<Queue, 'changeVisibility'>;
  readonly log: Logger;
  readonly clock: () => number;
  readonly tally: { visibilityExtensions: number };
}

export class VisibilityRefresher {
  readonly #tracked = new Map<Held, Tracked>();

  constructor(
    private readonly deps: RefresherDeps,
    private readonly visibilityTimeoutSeconds: number,
    /** Aborts extensions under way (the hard stop). */
    private readonly signal: AbortSignal,
  ) {}

  /** How often `tick` should run: often enough to extend on time, at most once a second. */
  get tickMs(): number {
    return Math.min(1_000, Math.max(50, (this.visibilityTimeoutSeconds * 500) / 4));
  }

  /** Receives tracked right now. */
  get size(): number {
    return this.#tracked.size;
  }

  /** Starts keeping a receive invisible; its first extension is due at half the timeout. */
  track(held: Held): void {
    this.#tracked.set(held, { held, nextAt: held.receivedAt + this.visibilityTimeoutSeconds * 500, call: undefined });
  }

  /** Stops extending receives (committed or about to be handed back); resolves once no extension of theirs is under way. */
  async untrack(group: readonly Held[]): Promise<void> {
    const calls: Promise<unknown>[] = [];
    for (const held of group) {
      const call = this.#tracked.get(held)?.call;
      this.#tracked.delete(held);
      if (call !== undefined) calls.push(call);
    }
    await Promise.all(calls);
  }

  /** Extends every tracked receive that is due and has no extension under way. */
  tick(): void {
    const now = this.deps.clock();
    for (const tracked of this.#tracked.values()) {
      if (tracked.call !== undefined || tracked.nextAt > now) continue;
      tracked.nextAt = now + this.visibilityTimeoutSeconds * 500;
      tracked.call = this.#extend(tracked).finally(() => {
        tracked.call = undefined;
      });
    }
  }

  async #extend(tracked: Tracked): Promise<void> {
    const { queue, log, clock, tally } = this.deps;
    const { messages, receivedAt } = tracked.held;
    const elapsedSeconds = Math.ceil((clock() - receivedAt) / 1000);
    const extendSeconds = Math.min(this.visibilityTimeoutSeconds, MAX_VISIBILITY_SECONDS - elapsedSeconds);
    if (extendSeconds <= 0) {
      this.#tracked.delete(tracked.held);
      log.warn({ messages: messages.length }, 'batch reached the 12-hour visibility limit; SQS may deliver it again');
      return;
    }
    try {
      const failed = await queue.changeVisibility(messages, extendSeconds, this.signal);
      tally.visibilityExtensions += messages.length - failed.length;
      if (failed.length > 0) log.warn({ messageIds: failed }, 'visibility extension refused');
    } catch (err) {
      if (!this.signal.aborted) log.warn({ err: describeError(err) }, 'visibility extension failed');
    }
  }
}
