/**
 * A receive's messages as the pipeline holds them, from the receive until they are deleted or
 * handed back, and the sleep every loop waits in.
 */
import { setTimeout as sleepUntil } from 'node:timers/promises';
import type { QueueMessage } from '../source/queue.js';
import type { Outcome } from '../transform/transform.js';

/** The messages of one receive, from the receive until they are deleted or handed back. */
export interface Held {
  readonly messages: readonly QueueMessage[];
  readonly outcomes: readonly Outcome[];
  /** Body bytes, as counted against the in-flight bound. */
  readonly bytes: number;
  /** Monotonic time of the receive, for the flush interval and SQS's 12-hour limit. */
  readonly receivedAt: number;
}

/** Resolves after `ms`, or at once when `signal` aborts; never rejects. */
export async function sleep(ms: number, signal: AbortSignal): Promise<void> {
  await sleepUntil(ms, undefined, { signal }).catch(() => undefined);
}

/** The retry delays of a loop: full jitter from `retryBaseDelayMs` doubling up to `retryMaxDelayMs`. */
export interface RetryOptions {
  readonly retryBaseDelayMs: number;
  readonly retryMaxDelayMs: number;
}
