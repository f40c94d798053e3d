/**
 * In-memory fakes behind the pipeline's narrow SQS interfaces (`Queue`, `DeadLetterQueue`), for
 * faults the emulator cannot produce: throttled receives, refused receipt handles, exact
 * receive counts, a dead-letter queue that fails on cue. Everything else in the tests that use
 * them is real (Postgres, the pipeline).
 *
 * The fake behaves like SQS where the pipeline can tell: a received message stays invisible for
 * its visibility timeout, then comes back with a higher receive count and a new receipt handle;
 * only the latest receipt handle can delete it or change its visibility. Its own clock is
 * `performance.now()`, so tests may stub `Date.now` without moving the queue's timeouts.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DeadLetter, DeadLetterQueue, ForwardResult, MessageRef, Queue, QueueDepth, QueueMessage, QueueSettings, ReceiveOptions } from '../../src/source/queue.js';

/** One call seen by a fake, in the order the calls were made (shared by a queue and its DLQ). */
export interface FakeCall {
  readonly op: 'receive' | 'delete' | 'changeVisibility' | 'forward';
  readonly messageIds: readonly string[];
  /** For changeVisibility: the timeout asked for. */
  readonly timeoutSeconds?: number;
  /** performance.now() when the call was made. */
  readonly atMs: number;
  /** Date.now() when the call was made (stubbed or not). */
  readonly wallMs: number;
}

interface Stored {
  readonly messageId: string;
  readonly body: string;
  readonly sentTimestampMs: number;
  receiveCount: number;
  receiptHandle: string | undefined;
  visibleAtMs: number;
  deleted: boolean;
}

/**
 * Scripted faults. Each hook gets the 1-based number of the call of its kind and may throw;
 * `delete` and `changeVisibility` may also return ids to report as refused (the fake then leaves
 * those messages as they are).
 */
export interface FakeQueueFaults {
  receive?: (call: number) => void;
  delete?: (call: number, messages: readonly MessageRef[]) => readonly string[] | undefined;
  changeVisibility?: (call: number, messages: readonly MessageRef[], timeoutSeconds: number) => readonly string[] | undefined;
}

export class FakeQueue implements Queue {
  readonly calls: FakeCall[];
  readonly faults: FakeQueueFaults = {};
  /**
   * Operations whose calls never answer, like an endpoint that accepts connections and says
   * nothing: a call waits until its signal aborts, then rejects with the abort's reason.
   */
  readonly stalled = new Set<'delete' | 'changeVisibility'>();
  /** Most messages ever handed out and neither deleted nor handed back (visibility 0) at once. */
  maxOutstanding = 0;
  readonly #messages = new Map<string, Stored>();
  /** Ids handed out by a receive and not deleted or released since. */
  readonly #outstanding = new Set<string>();
  readonly #visibilityTimeoutSeconds: number;
  #counts = { receive: 0, delete: 0, changeVisibility: 0 };

  constructor(options: { visibilityTimeoutSeconds?: number; calls?: FakeCall[] } = {}) {
    this.#visibilityTimeoutSeconds = options.visibilityTimeoutSeconds ?? 30;
    this.calls = options.calls ?? [];
  }

  /** Enqueues bodies; `receiveCount` pretends they were received that often already. Returns their ids. */
  send(bodies: readonly string[], options: { receiveCount?: number } = {}): string[] {
    return bodies.map((body) => {
      const messageId = randomUUID();
      this.#messages.set(messageId, {
        messageId,
        body,
        sentTimestampMs: Date.now(),
        receiveCount: options.receiveCount ?? 0,
        receiptHandle: undefined,
        visibleAtMs: 0,
        deleted: false,
      });
      return messageId;
    });
  }

  /** How often each message was received, by id. */
  receiveCounts(): Map<string, number> {
    return new Map([...this.#messages.values()].map((m) => [m.messageId, m.receiveCount]));
  }

  /** Ids of messages not deleted. */
  remaining(): string[] {
    return [...this.#messages.values()].filter((m) => !m.deleted).map((m) => m.messageId);
  }

  /** Receive calls made, including those a fault made fail. */
  get receiveAttempts(): number {
    return this.#counts.receive;
  }

  /** Messages handed out and not deleted or released right now. */
  get outstanding(): number {
    return this.#outstanding.size;
  }

  /** Makes messages visible at once, as an expired or refused receipt handle would in time. */
  makeVisible(messageIds: readonly string[]): void {
    for (const id of messageIds) {
      const message = this.#messages.get(id);
      if (message === undefined || message.deleted) continue;
      message.visibleAtMs = 0;
      message.receiptHandle = undefined;
      this.#outstanding.delete(id);
    }
  }

  callsOf(op: FakeCall['op']): FakeCall[] {
    return this.calls.filter((c) => c.op === op);
  }

  async receive(options: ReceiveOptions): Promise<QueueMessage[]> {
    this.#counts.receive += 1;
    this.faults.receive?.(this.#counts.receive);
    const waitMs = options.waitTimeSeconds * 1000;
    const started = performance.now();
    for (;;) {
      const now = performance.now();
      // Like the SDK, an aborted long poll hands nothing out.
      const visible = options.signal.aborted
        ? []
        : [...this.#messages.values()].filter((m) => !m.deleted && m.visibleAtMs <= now).slice(0, options.maxMessages);
      if (visible.length > 0 || options.signal.aborted || now - started >= waitMs) {
        const timeoutMs = (options.visibilityTimeoutSeconds ?? this.#visibilityTimeoutSeconds) * 1000;
        const received = visible.map((m) => {
          m.receiveCount += 1;
          m.receiptHandle = `${m.messageId}/${m.receiveCount}/${randomUUID()}`;
          m.visibleAtMs = now + timeoutMs;
          this.#outstanding.add(m.messageId);
          return {
            messageId: m.messageId,
            receiptHandle: m.receiptHandle,
            body: m.body,
            sentTimestampMs: m.sentTimestampMs,
            receiveCount: m.receiveCount,
          };
        });
        this.maxOutstanding = Math.max(this.maxOutstanding, this.#outstanding.size);
        this.calls.push({ op: 'receive', messageIds: received.map((m) => m.messageId), atMs: now, wallMs: Date.now() });
        return received;
      }
      await sleep(10, undefined, { signal: options.signal }).catch(() => undefined);
    }
  }

  async delete(messages: readonly MessageRef[], signal?: AbortSignal): Promise<string[]> {
    this.#counts.delete += 1;
    this.calls.push({ op: 'delete', messageIds: messages.map((m) => m.messageId), atMs: performance.now(), wallMs: Date.now() });
    if (this.stalled.has('delete')) await stall(signal);
    const refused = this.faults.delete?.(this.#counts.delete, messages) ?? [];
    return this.#applyBatch(messages, refused, (message, ref) => {
      message.deleted = true;
      this.#outstanding.delete(ref.messageId);
    });
  }

  async changeVisibility(messages: readonly MessageRef[], timeoutSeconds: number, signal?: AbortSignal): Promise<string[]> {
    this.#counts.changeVisibility += 1;
    this.calls.push({ op: 'changeVisibility', messageIds: messages.map((m) => m.messageId), timeoutSeconds, atMs: performance.now(), wallMs: Date.now() });
    if (this.stalled.has('changeVisibility')) await stall(signal);
    const atMs = performance.now();
    const refused = this.faults.changeVisibility?.(this.#counts.changeVisibility, messages, timeoutSeconds) ?? [];
    return this.#applyBatch(messages, refused, (message, ref) => {
      message.visibleAtMs = atMs + timeoutSeconds * 1000;
      if (timeoutSeconds === 0) this.#outstanding.delete(ref.messageId);
    });
  }

  async depth(): Promise<QueueDepth> {
    const now = performance.now();
    const live = [...this.#messages.values()].filter((m) => !m.deleted);
    const visible = live.filter((m) => m.visibleAtMs <= now).length;
    return { visible, inFlight: live.length - visible, delayed: 0 };
  }

  async settings(): Promise<QueueSettings> {
    return { visibilityTimeoutSeconds: this.#visibilityTimeoutSeconds, retentionSeconds: 345_600 };
  }

  /**
   * Applies `change` to each message whose receipt handle is current and whose id the fault hook
   * did not refuse; resolves, as SQS does, with the ids it did not apply to.
   */
  #applyBatch(messages: readonly MessageRef[], refused: Iterable<string>, change: (message: Stored, ref: MessageRef) => void): string[] {
    const refusedIds = new Set(refused);
    const failed: string[] = [];
    for (const ref of messages) {
      const message = this.#current(ref);
      if (message === undefined || refusedIds.has(ref.messageId)) failed.push(ref.messageId);
      else change(message, ref);
    }
    return failed;
  }

  /** The message `ref` names, if its receipt handle is the latest one. */
  #current(ref: MessageRef): Stored | undefined {
    const message = this.#messages.get(ref.messageId);
    return message !== undefined && !message.deleted && message.receiptHandle === ref.receiptHandle ? message : undefined;
  }
}

/** Never resolves; rejects when `signal` aborts (never, without one). */
async function stall(signal: AbortSignal | undefined): Promise<never> {
  return await new Promise<never>((_, reject) => {
    const abort = () => reject(signal?.reason instanceof Error ? signal.reason : new DOMException('This operation was aborted', 'AbortError'));
    if (signal?.aborted) abort();
    else signal?.addEventListener('abort', abort, { once: true });
  });
}

/**
 * A dead-letter queue that keeps what it is sent. `fault` may throw to fail a forward (nothing
 * is sent, as when SendMessageBatch fails as a whole), or return ids to refuse for good (as SQS
 * refuses an entry that is the sender's fault).
 */
export class FakeDeadLetterQueue implements DeadLetterQueue {
  readonly letters: DeadLetter[] = [];
  fault: ((call: number, letters: readonly DeadLetter[]) => void | readonly string[] | Promise<void | readonly string[]>) | undefined;
  #calls = 0;

  constructor(readonly calls: FakeCall[] = []) {}

  async forward(letters: readonly DeadLetter[]): Promise<ForwardResult> {
    this.#calls += 1;
    this.calls.push({ op: 'forward', messageIds: letters.map((l) => l.messageId), atMs: performance.now(), wallMs: Date.now() });
    let refusedIds: void | readonly string[];
    try {
      refusedIds = await this.fault?.(this.#calls, letters);
    } catch (err) {
      return { sent: [], refused: [], failure: err };
    }
    const refused = new Set(refusedIds ?? []);
    const sent = letters.filter((l) => !refused.has(l.messageId));
    this.letters.push(...sent.map((l) => ({ ...l })));
    return {
      sent: sent.map((l) => l.messageId),
      refused: [...refused].map((messageId) => ({ messageId, reason: 'InvalidMessageContents: refused by the test' })),
    };
  }
}
