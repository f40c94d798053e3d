/**
 * What the pipeline needs from a queue, and the shapes that cross that boundary. Every client
 * (the SDK adapter in sqs.ts, the lean one in lean-sqs.ts, the fakes of the tests) implements
 * `Queue`; this module depends on none of them.
 */

/** Largest batch SQS accepts for receive, delete and change-visibility. */
export const SQS_MAX_BATCH = 10;

/** Largest SendMessageBatch request SQS takes: bodies and message attributes of all its entries. */
export const SQS_MAX_BATCH_BYTES = 1_048_576;

/** Message attributes of a forwarded message; SQS caps an attribute value at 256 KiB. */
export const DEAD_LETTER_REASON_ATTRIBUTE = 'login_etl_reason';
export const DEAD_LETTER_MESSAGE_ID_ATTRIBUTE = 'login_etl_message_id';

/** A message as received from the queue, with the system attributes the pipeline asks for. */
export interface QueueMessage {
  readonly messageId: string;
  readonly receiptHandle: string;
  readonly body: string;
  /** When SQS accepted the message (SentTimestamp), in epoch milliseconds. */
  readonly sentTimestampMs: number | undefined;
  readonly receiveCount: number;
}

export interface MessageRef {
  readonly messageId: string;
  readonly receiptHandle: string;
}

export interface QueueDepth {
  readonly visible: number;
  readonly inFlight: number;
  readonly delayed: number;
}

export interface QueueSettings {
  readonly visibilityTimeoutSeconds: number;
  readonly retentionSeconds: number;
}

export interface ReceiveOptions {
  readonly maxMessages: number;
  readonly waitTimeSeconds: number;
  /** Overrides the queue's visibility timeout for these messages. */
  readonly visibilityTimeoutSeconds?: number | undefined;
  readonly signal: AbortSignal;
}

/**
 * What the pipeline needs from a queue. Every call has a deadline of its own (a receive: its
 * wait time plus the SQS timeout; the others: the SQS timeout); a `signal` given ends it sooner.
 */
export interface Queue {
  receive(options: ReceiveOptions): Promise<QueueMessage[]>;
  /** Deletes messages; resolves with the ids SQS refused to delete. */
  delete(messages: readonly MessageRef[], signal?: AbortSignal): Promise<string[]>;
  /** Sets the visibility timeout of messages; resolves with the ids SQS refused. */
  changeVisibility(messages: readonly MessageRef[], timeoutSeconds: number, signal?: AbortSignal): Promise<string[]>;
  depth(): Promise<QueueDepth>;
  settings(): Promise<QueueSettings>;
}

/** A rejected message on its way to the dead-letter queue. */
export interface DeadLetter {
  readonly messageId: string;
  /** The original body, untouched. */
  readonly body: string;
  readonly reason: string;
}

/** What became of letters handed to `DeadLetterQueue.forward`. */
export interface ForwardResult {
  /** Ids of the letters the dead-letter queue accepted. */
  readonly sent: readonly string[];
  /** Letters refused for good (their content, or their size), with why; never the body. */
  readonly refused: readonly { readonly messageId: string; readonly reason: string }[];
  /**
   * Letters of a request that failed with no answer after it may have reached SQS (a connection
   * cut, a deadline): they may or may not be in the dead-letter queue, so they are not sent again.
   */
  readonly uncertain?: readonly string[];
  /** What stopped the others, if any were neither sent, refused nor uncertain: they may be tried again. */
  readonly failure?: unknown;
}

/** Where rejected messages are forwarded, when a dead-letter queue is configured. */
export interface DeadLetterQueue {
  forward(letters: readonly DeadLetter[]): Promise<ForwardResult>;
}

/**
 * The system attributes a receive asks for. Sent under both of SQS's names: SQS reads either;
 * `AttributeNames` is the older one, and some SQS implementations read only it.
 */
export const RECEIVE_ATTRIBUTE_NAMES = ['SentTimestamp', 'ApproximateReceiveCount'] as const;

/** A received message as SQS spells it (SDK and JSON protocol alike). */
export interface SqsMessageShape {
  readonly MessageId?: string | undefined;
  readonly ReceiptHandle?: string | undefined;
  readonly Body?: string | undefined;
  readonly Attributes?: { readonly SentTimestamp?: string | undefined; readonly ApproximateReceiveCount?: string | undefined } | undefined;
}

/** A received SQS message as the pipeline sees it; undefined without id or handle. */
export function toQueueMessage(message: SqsMessageShape): QueueMessage | undefined {
  if (message.MessageId === undefined || message.ReceiptHandle === undefined) return undefined;
  return queueMessage(message.MessageId, message.ReceiptHandle, message.Body ?? '', message.Attributes ?? {});
}

/** The pipeline's view of a delivered message, from its id, handle, body and system attributes (as SQS spells them). */
export function queueMessage(
  messageId: string,
  receiptHandle: string,
  body: string,
  attributes: { readonly SentTimestamp?: string | undefined; readonly ApproximateReceiveCount?: string | undefined },
): QueueMessage {
  const sent = Number(attributes.SentTimestamp);
  const count = Number(attributes.ApproximateReceiveCount);
  return {
    messageId,
    receiptHandle,
    body,
    sentTimestampMs: Number.isFinite(sent) && sent > 0 ? sent : undefined,
    receiveCount: Number.isFinite(count) && count > 0 ? count : 1,
  };
}

/** Splits a list into chunks of at most `size` items. */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** How long SQS calls may take: `timeoutMs` for a call, a receive its wait time on top. */
export interface SqsDeadlines {
  readonly timeoutMs: number;
}

/** The default of `--sqs-timeout-seconds`, in milliseconds. */
export const DEFAULT_SQS_TIMEOUT_MS = 10_000;

/** A receive's deadline: the long poll itself, plus the time any other call gets. */
export function receiveDeadlineMs(deadlines: SqsDeadlines, waitTimeSeconds: number): number {
  return waitTimeSeconds * 1000 + deadlines.timeoutMs;
}

/** The caller's signal (if any) combined with a deadline of `ms`. */
export function withDeadline(ms: number, signal: AbortSignal | undefined): AbortSignal {
  const deadline = AbortSignal.timeout(ms);
  return signal === undefined ? deadline : AbortSignal.any([signal, deadline]);
}
