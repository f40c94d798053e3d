/**
 * The read loop: takes room for a receive's worst case under the in-flight bounds, receives,
 * and hands what came to the pipeline. One runs per `--receive-concurrency`.
 */
import { backoffMs, classify, type DependencyState } from '../failure.js';
import type { InFlight } from '../in-flight.js';
import { SQS_MAX_BATCH, type Queue } from '../source/queue.js';
import type { QueueMessage } from '../source/queue.js';
import { sleep, type RetryOptions } from './held.js';

/**
 * The largest message SQS delivers: 1 MiB (1,048,576 bytes) since August 2025, up from 256 KiB;
 * a queue's MaximumMessageSize can only lower it. It bounds the body of each message.
 */
export const SQS_MAX_MESSAGE_BYTES = 1_048_576;

/**
 * What one receive may bring at worst under a byte bound: up to 10 messages of SQS's largest
 * size, fewer when the bound could not hold 10 of them (at least one).
 */
export function receiveWorstCase(maxInFlightBytes: number): { readonly messages: number; readonly bytes: number } {
  const messages = Math.max(1, Math.min(SQS_MAX_BATCH, Math.floor(maxInFlightBytes / SQS_MAX_MESSAGE_BYTES)));
  return { messages, bytes: messages * SQS_MAX_MESSAGE_BYTES };
}

export interface ReceiveLoopOptions extends RetryOptions {
  /** The long-poll wait; a drain polls with 0. */
  readonly waitTimeSeconds: number;
  readonly drain: boolean;
  /** Asked for on each receive instead of the queue's own. */
  readonly visibilityTimeoutSeconds: number | undefined;
  /** With `drain`: the pause after an empty receive. */
  readonly drainPollIntervalMs: number;
}

export interface ReceiveLoopDeps {
  readonly queue: Pick<Queue, 'receive'>;
  readonly inFlight: InFlight;
  readonly sqs: DependencyState;
  /** Takes a receive's messages and counts them in flight; called before the reservation is given back. */
  readonly accept: (messages: QueueMessage[]) => void;
  /** A receive came back empty. */
  readonly onEmpty: () => void;
  /** Every receive's answer: whether it brought as many messages as it asked for. */
  readonly onAnswer: (full: boolean) => void;
}

export interface ReceiveSignals {
  /** No receive is issued after it; one under way is left to answer. */
  readonly stop: AbortSignal;
  /** Cuts a receive under way. */
  readonly cut: AbortSignal;
}

/**
 * Receives until `stop`. A receive is issued only once the in-flight bounds have room for its
 * worst case (`receiveWorstCase`), so the bounds hold whatever SQS hands out. `stop` does not cut
 * a receive under way: SQS keeps a long poll the client gave up on open, and it would take the
 * messages the pipeline hands back at shutdown; the receive answers within its wait instead, and
 * what it brings is accepted like any other.
 */
export async function receiveLoop(deps: ReceiveLoopDeps, options: ReceiveLoopOptions, signals: ReceiveSignals): Promise<void> {
  const { queue, inFlight, sqs } = deps;
  const { stop, cut } = signals;
  const worst = receiveWorstCase(inFlight.maxBytes);
  let failures = 0;
  while (!stop.aborted && !cut.aborted) {
    if (!(await inFlight.acquire(worst.messages, worst.bytes, stop))) break;
    let messages: QueueMessage[];
    try {
      messages = await queue.receive({
        maxMessages: worst.messages,
        // A drain polls briefly: a long poll still open when the drain ends could be handed
        // messages sent after it, which would then stay hidden for their visibility timeout.
        waitTimeSeconds: options.drain ? 0 : options.waitTimeSeconds,
        visibilityTimeoutSeconds: options.visibilityTimeoutSeconds,
        signal: cut,
      });
      failures = 0;
      sqs.succeeded();
    } catch (err) {
      inFlight.release(worst.messages, worst.bytes);
      if (stop.aborted || cut.aborted) break;
      failures += 1;
      sqs.failed(classify(err, 'sqs'), 'receive failed; backing off', { attempt: failures });
      await sleep(backoffMs(failures, options.retryBaseDelayMs, options.retryMaxDelayMs), stop);
      continue;
    }
    if (messages.length > 0) deps.accept(messages);
    deps.onAnswer(messages.length >= worst.messages);
    inFlight.release(worst.messages, worst.bytes);
    if (messages.length > 0) continue;
    if (options.drain) {
      deps.onEmpty();
      await sleep(options.drainPollIntervalMs, stop);
    }
  }
}
