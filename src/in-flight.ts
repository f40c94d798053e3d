/**
 * Back-pressure: a bound on the messages (count and bytes) the process holds at once. Receive
 * loops wait for room before asking SQS for more, so a slow or unreachable database pauses
 * polling instead of piling messages up in memory.
 */
export class InFlight {
  #messages = 0;
  /** Room taken for receives still under way; not messages held yet. */
  #reserved = 0;
  #bytes = 0;
  #waiters: (() => void)[] = [];

  constructor(
    readonly maxMessages: number,
    readonly maxBytes: number,
  ) {}

  get messages(): number {
    return this.#messages;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Resolves once `upcoming` more messages fit under the count and the bytes held are under the
   * limit, or at once when `signal` aborts. A single receive can overshoot the byte bound by at
   * most one batch, since sizes are only known after receiving.
   */
  async waitForRoom(upcoming: number, signal: AbortSignal): Promise<void> {
    while (!signal.aborted && !this.#hasRoom(upcoming)) {
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal.removeEventListener('abort', wake);
          resolve();
        };
        this.#waiters.push(wake);
        signal.addEventListener('abort', wake, { once: true });
      });
    }
  }

  /**
   * Waits for room for `messages` more and takes it in the same step, so that loops waiting
   * together cannot all pass the check before any of them counts. Resolves false if `signal`
   * aborted first (nothing taken).
   */
  async acquire(messages: number, signal: AbortSignal): Promise<boolean> {
    for (;;) {
      if (signal.aborted) return false;
      if (this.#hasRoom(messages)) {
        this.#reserved += messages;
        return true;
      }
      await this.waitForRoom(messages, signal);
    }
  }

  /** Gives back room taken by `acquire`. */
  release(messages: number): void {
    this.#reserved -= messages;
    this.remove(0, 0);
  }

  add(messages: number, bytes: number): void {
    this.#messages += messages;
    this.#bytes += bytes;
  }

  remove(messages: number, bytes: number): void {
    this.#messages -= messages;
    this.#bytes -= bytes;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  #hasRoom(upcoming: number): boolean {
    return this.#messages + this.#reserved + upcoming <= this.maxMessages && this.#bytes < this.maxBytes;
  }
}
