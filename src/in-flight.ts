/**
 * Back-pressure: a bound on the messages (count and body bytes) the process holds at once.
 * Receive loops reserve room for the worst case of a receive before asking SQS for more, so the
 * bound holds whatever SQS hands out, and a slow or unreachable database pauses polling instead
 * of piling messages up in memory.
 */
export class InFlight {
  #messages = 0;
  #bytes = 0;
  /** Room taken for receives still under way; not messages held yet. */
  #reservedMessages = 0;
  #reservedBytes = 0;
  #waiters: (() => void)[] = [];

  constructor(
    readonly maxMessages: number,
    readonly maxBytes: number,
  ) {}

  /** Messages held. */
  get messages(): number {
    return this.#messages;
  }

  /** Body bytes held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Room reserved by receives under way. */
  get reserved(): { readonly messages: number; readonly bytes: number } {
    return { messages: this.#reservedMessages, bytes: this.#reservedBytes };
  }

  /**
   * Resolves once `messages` more messages of `bytes` more bytes fit under both bounds, counting
   * what is held and what is reserved, or at once when `signal` aborts.
   */
  async waitForRoom(messages: number, bytes: number, signal: AbortSignal): Promise<void> {
    while (!signal.aborted && !this.#hasRoom(messages, bytes)) {
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
   * Waits for room for `messages` more of `bytes` more bytes (a receive's worst case) and takes
   * it in the same step, so that loops waiting together cannot all pass the check before any of
   * them counts. Resolves false if `signal` aborted first (nothing taken).
   */
  async acquire(messages: number, bytes: number, signal: AbortSignal): Promise<boolean> {
    for (;;) {
      if (signal.aborted) return false;
      if (this.#hasRoom(messages, bytes)) {
        this.#reservedMessages += messages;
        this.#reservedBytes += bytes;
        return true;
      }
      await this.waitForRoom(messages, bytes, signal);
    }
  }

  /** Gives back room taken by `acquire`; call it after `add` for what the receive brought. */
  release(messages: number, bytes: number): void {
    this.#reservedMessages -= messages;
    this.#reservedBytes -= bytes;
    this.#wake();
  }

  add(messages: number, bytes: number): void {
    this.#messages += messages;
    this.#bytes += bytes;
  }

  remove(messages: number, bytes: number): void {
    this.#messages -= messages;
    this.#bytes -= bytes;
    this.#wake();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  #hasRoom(messages: number, bytes: number): boolean {
    return (
      this.#messages + this.#reservedMessages + messages <= this.maxMessages &&
      this.#bytes + this.#reservedBytes + bytes <= this.maxBytes
    );
  }
}
