/**
 * The batcher: gathers held receives into transactions of up to `maxBatchMessages`, waiting at
 * most `flushIntervalMs` (on a monotonic clock) for company.
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

  /** No more receives will come: what is pending goes out without waiting for company. */
  end(): void {
    this.#ended = true;
    this.#wake();
  }

  /**
   * The next group of receives to commit together: once `maxBatchMessages` are pending, the
   * oldest has waited `flushIntervalMs`, or receiving has ended. Undefined once ended and empty.
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
      if (this.#pendingMessages < maxBatchMessages && !this.#ended && waitedMs < flushIntervalMs) {
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
