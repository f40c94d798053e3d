/**
 * The batcher: gathers held receives into transactions of up to `maxBatchMessages`, waiting at
 * most `flushIntervalMs` (on a monotonic clock) for company, and not at all once the queue has
 * said that none is coming: a receive that brought fewer messages than it asked for found the
 * queue empty for the moment, and waiting would only add its time to every event's lag. Under a
 * backlog receives come back full and batches fill; at a trickle each commit goes out at once.
 */
import type { Held } from './held.js';

export interface BatcherOptions {
  readonly maxBatchMessages: number;
  readonly flushIntervalMs: number;
}

export class Batcher {
  #pending: Held[] = [];
  #pendingMessages = 0;
  #ended = false;
  /** The last receive came back with less than it asked for. */
  #quiet = false;
  #wakers: (() => void)[] = [];

  constructor(
    private readonly options: BatcherOptions,
    private readonly clock: () => number,
  ) {}

  /** Receives waiting for a writer. */
  get pending(): number {
    return this.#pending.length;
  }

  push(held: Held): void {
    this.#pending.push(held);
    this.#pendingMessages += held.messages.length;
    this.#wake();
  }

  /**
   * What a receive's answer says about the queue: `full` if it brought all it asked for (more
   * may be waiting), otherwise the queue is empty for now and what is pending goes out at once.
   */
  answered(full: boolean): void {
    this.#quiet = !full;
    if (this.#quiet) this.#wake();
  }

  /** No more receives will come: what is pending goes out without waiting for company. */
  end(): void {
    this.#ended = true;
    this.#wake();
  }

  /**
   * The next group of receives to commit together: once `maxBatchMessages` are pending, the
   * oldest has waited `flushIntervalMs`, the last receive found the queue empty, or receiving
   * has ended. Undefined once ended and empty.
   */
  async next(): Promise<Held[] | undefined> {
    const { maxBatchMessages, flushIntervalMs } = this.options;
    for (;;) {
      const oldest = this.#pending[0];
      if (oldest === undefined) {
        if (this.#ended) return undefined;
        await this.#waitForWork();
        continue;
      }
      const waitedMs = this.clock() - oldest.receivedAt;
      if (this.#pendingMessages < maxBatchMessages && !this.#ended && !this.#quiet && waitedMs < flushIntervalMs) {
        await this.#waitForWork(flushIntervalMs - waitedMs);
        continue;
      }
      const group: Held[] = [];
      let size = 0;
      for (let next = this.#pending[0]; next !== undefined; next = this.#pending[0]) {
        if (group.length > 0 && size + next.messages.length > maxBatchMessages) break;
        this.#pending.shift();
        group.push(next);
        size += next.messages.length;
      }
      this.#pendingMessages -= size;
      return group;
    }
  }

  #wake(): void {
    const wakers = this.#wakers;
    this.#wakers = [];
    for (const wake of wakers) wake();
  }

  /** Resolves on the next push, the end, or after `timeoutMs`. */
  async #waitForWork(timeoutMs?: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = timeoutMs === undefined ? undefined : setTimeout(resolve, timeoutMs);
      this.#wakers.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
