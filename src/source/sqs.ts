/**
 * SQS through the AWS SDK: the SDK client tuned for the pipeline, its Queue adapter
 * (`SqsQueue`) and the dead-letter queue. Where requests go and how they are signed is
 * src/source/aws.ts; src/source/clients.ts loads this module only when a process needs the SDK.
 */
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SQSClient,
  type QueueAttributeName,
} from '@aws-sdk/client-sqs';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { SqsConfig } from '../config.js';
import { SourceError } from '../errors.js';
import { classifyBatchEntry, mayHaveArrived, needsFreshCredentials } from '../failure.js';
import { http, https } from '../node-http.js';
import { resolveSqsEndpoint, signingFor, type Signing, type SigningOptions } from './aws.js';
import {
  chunks,
  DEFAULT_SQS_TIMEOUT_MS,
  DEAD_LETTER_MESSAGE_ID_ATTRIBUTE,
  DEAD_LETTER_REASON_ATTRIBUTE,
  receiveDeadlineMs,
  RECEIVE_ATTRIBUTE_NAMES,
  SQS_MAX_BATCH,
  SQS_MAX_BATCH_BYTES,
  toQueueMessage,
  withDeadline,
  type DeadLetter,
  type DeadLetterQueue,
  type ForwardResult,
  type MessageRef,
  type Queue,
  type QueueDepth,
  type QueueMessage,
  type QueueSettings,
  type ReceiveOptions,
  type SqsDeadlines,
} from './queue.js';

export interface SqsClientOptions extends SigningOptions {
  readonly maxSockets: number;
  /** The region and credentials to sign with, shared with another client; without it, signingFor(config, options). */
  readonly signing?: Signing;
  /**
   * `pipeline`: tuned for a caller with its own retry policy (see PIPELINE_CLIENT_TUNING);
   * without it, the SDK's defaults (three attempts, the MD5 check of bodies), as `send` wants.
   */
  readonly tuning?: 'pipeline';
}

/**
 * The SDK client as the pipeline uses it. One attempt: the pipeline retries every failure
 * itself, with backoff, readiness and deadlines of its own, and three attempts under it turn one
 * deadline into three and a throttled queue into triple the requests. No MD5 check of received
 * bodies (`md5: false`): it guards against corruption in transit, which TLS already detects on
 * every AWS endpoint, it costs a hash per message, and the lean client does not do it either, so
 * the two are measured doing the same work; a body that arrives damaged anyway fails validation
 * and is kept as a rejection. The flexible-checksum settings (`requestChecksumCalculation`,
 * `responseChecksumValidation`) do not exist for SQS in this SDK: no SQS operation carries a
 * checksum trait, so there is nothing to choose there.
 */
export const PIPELINE_CLIENT_TUNING = { maxAttempts: 1, md5: false } as const;

/**
 * An SDK client bound to the right endpoint, signing for the region sqsRegionProvider finds.
 * Credentials come from the SDK's standard chain (sqsCredentialProvider) unless given.
 */
export function createSqsClient(config: SqsConfig, options: SqsClientOptions): SQSClient {
  const endpoint = resolveSqsEndpoint(config);
  const agentOptions = { keepAlive: true, maxSockets: options.maxSockets };
  const { region, credentials } = options.signing ?? signingFor(config, options);
  return new SQSClient({
    region,
    credentials,
    ...(endpoint === undefined ? {} : { endpoint, useQueueUrlAsEndpoint: false }),
    requestHandler: new NodeHttpHandler({
      httpAgent: new http.Agent(agentOptions),
      httpsAgent: new https.Agent(agentOptions),
      connectionTimeout: 5_000,
    }),
    ...(options.tuning === 'pipeline' ? PIPELINE_CLIENT_TUNING : {}),
  });
}

/**
 * The queue the pipeline reads, through the stock SDK client. Every call has a deadline
 * (receive: its wait time plus `timeoutMs`; the others: `timeoutMs`), combined with the caller's
 * signal; a call cut by its deadline is a SourceError (transient), one cut by the caller's
 * signal rethrows the abort.
 */
export class SqsQueue implements Queue {
  /** Set after an expired-credentials or clock-skew error: the next call asks the chain for fresh credentials first. */
  #refreshCredentials = false;

  constructor(
    private readonly client: SQSClient,
    private readonly queueUrl: string,
    private readonly deadlines: SqsDeadlines = { timeoutMs: DEFAULT_SQS_TIMEOUT_MS },
  ) {}

  async receive(options: ReceiveOptions): Promise<QueueMessage[]> {
    const deadlineMs = receiveDeadlineMs(this.deadlines, options.waitTimeSeconds);
    const response = await this.#send('ReceiveMessage', deadlineMs, options.signal, (abortSignal) =>
      this.client.send(
        new ReceiveMessageCommand({
          QueueUrl: this.queueUrl,
          MaxNumberOfMessages: options.maxMessages,
          WaitTimeSeconds: options.waitTimeSeconds,
          ...(options.visibilityTimeoutSeconds === undefined ? {} : { VisibilityTimeout: options.visibilityTimeoutSeconds }),
          MessageSystemAttributeNames: [...RECEIVE_ATTRIBUTE_NAMES],
          // The older name of the same list; the SDK types it for queue attributes only.
          AttributeNames: [...RECEIVE_ATTRIBUTE_NAMES] as unknown as QueueAttributeName[],
        }),
        { abortSignal },
      ),
    );
    return (response.Messages ?? []).flatMap((m) => toQueueMessage(m) ?? []);
  }

  async delete(messages: readonly MessageRef[], signal?: AbortSignal): Promise<string[]> {
    const failed: string[] = [];
    for (const batch of chunks(messages, SQS_MAX_BATCH)) {
      const response = await this.#send('DeleteMessageBatch', this.deadlines.timeoutMs, signal, (abortSignal) =>
      this.client.send(
        new DeleteMessageBatchCommand({
          QueueUrl: this.queueUrl,
          Entries: batch.map((m, i) => ({ Id: String(i), ReceiptHandle: m.receiptHandle })),
        }),
        { abortSignal },
      ),
    );
      for (const failure of response.Failed ?? []) {
        const ref = batch[Number(failure.Id)];
        if (ref) failed.push(ref.messageId);
      }
    }
    return failed;
  }

  async changeVisibility(messages: readonly MessageRef[], timeoutSeconds: number, signal?: AbortSignal): Promise<string[]> {
    const failed: string[] = [];
    for (const batch of chunks(messages, SQS_MAX_BATCH)) {
      const response = await this.#send('ChangeMessageVisibilityBatch', this.deadlines.timeoutMs, signal, (abortSignal) =>
      this.client.send(
        new ChangeMessageVisibilityBatchCommand({
          QueueUrl: this.queueUrl,
          Entries: batch.map((m, i) => ({ Id: String(i), ReceiptHandle: m.receiptHandle, VisibilityTimeout: timeoutSeconds })),
        }),
        { abortSignal },
      ),
    );
      for (const failure of response.Failed ?? []) {
        const ref = batch[Number(failure.Id)];
        if (ref) failed.push(ref.messageId);
      }
    }
    return failed;
  }

  async depth(): Promise<QueueDepth> {
    const response = await this.#send('GetQueueAttributes', this.deadlines.timeoutMs, undefined, (abortSignal) =>
      this.client.send(
        new GetQueueAttributesCommand({
        QueueUrl: this.queueUrl,
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
      }),
        { abortSignal },
      ),
    );
    const attribute = (name: string) => Number(response.Attributes?.[name as keyof typeof response.Attributes] ?? 0);
    return {
      visible: attribute('ApproximateNumberOfMessages'),
      inFlight: attribute('ApproximateNumberOfMessagesNotVisible'),
      delayed: attribute('ApproximateNumberOfMessagesDelayed'),
    };
  }

  async settings(): Promise<QueueSettings> {
    const response = await this.#send('GetQueueAttributes', this.deadlines.timeoutMs, undefined, (abortSignal) =>
      this.client.send(
        new GetQueueAttributesCommand({ QueueUrl: this.queueUrl, AttributeNames: ['VisibilityTimeout', 'MessageRetentionPeriod'] }),
        { abortSignal },
      ),
    );
    return {
      visibilityTimeoutSeconds: Number(response.Attributes?.VisibilityTimeout ?? 30),
      retentionSeconds: Number(response.Attributes?.MessageRetentionPeriod ?? 345_600),
    };
  }

  async #send<T>(operation: string, deadlineMs: number, signal: AbortSignal | undefined, send: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    try {
      return await callSqs(
        operation,
        async (abortSignal) => {
          if (this.#refreshCredentials) {
            this.#refreshCredentials = false;
            await this.client.config.credentials({ forceRefresh: true });
          }
          return await send(abortSignal);
        },
        deadlineMs,
        signal,
      );
    } catch (err) {
      if (err instanceof SourceError && needsFreshCredentials(err)) this.#refreshCredentials = true;
      throw err;
    }
  }
}

/**
 * Runs an SDK call under a deadline of `deadlineMs` combined with the caller's `signal`. Its
 * failure is a SourceError with SQS's status and error type; the deadline's is one without a
 * status (transient, like any call that got no answer). An abort by the caller is rethrown as is.
 */
async function callSqs<T>(operation: string, send: (abortSignal: AbortSignal) => Promise<T>, deadlineMs: number, signal?: AbortSignal): Promise<T> {
  const abortSignal = withDeadline(deadlineMs, signal);
  try {
    return await send(abortSignal);
  } catch (err) {
    if (signal?.aborted) throw err;
    if (abortSignal.aborted) throw deadlineError(operation, deadlineMs, err);
    throw sqsError(operation, err);
  }
}

/** A call that got no answer within its deadline: transient, as when the network fails. */
export function deadlineError(operation: string, deadlineMs: number, cause: unknown): SourceError {
  return new SourceError(`SQS ${operation} failed: no answer within ${deadlineMs} ms`, { cause, type: 'TimeoutError' });
}

/** The SourceError for an SDK failure of `operation`: what SQS answered, if it answered. */
export function sqsError(operation: string, err: unknown): SourceError {
  const status = (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
  // A failure with a 2xx status is the SDK failing to read SQS's answer (the lean client's MalformedResponse).
  const unreadable = status !== undefined && status >= 200 && status < 300;
  return new SourceError(`SQS ${operation} failed: ${unreadable ? `the response (HTTP ${status}) could not be read` : err instanceof Error ? err.message : String(err)}`, {
    cause: err,
    status,
    type: unreadable ? 'MalformedResponse' : err instanceof Error ? err.name : undefined,
  });
}

/**
 * Groups items into requests SQS takes: at most `maxEntries` each and `maxBytes` in all. An item
 * larger than `maxBytes` on its own can never be sent and is returned apart.
 */
export function batchesBySize<T>(items: readonly T[], bytesOf: (item: T) => number, maxEntries: number, maxBytes: number): { batches: T[][]; oversized: T[] } {
  const batches: T[][] = [];
  const oversized: T[] = [];
  let batch: T[] = [];
  let batchBytes = 0;
  for (const item of items) {
    const bytes = bytesOf(item);
    if (bytes > maxBytes) {
      oversized.push(item);
      continue;
    }
    if (batch.length === maxEntries || batchBytes + bytes > maxBytes) {
      batches.push(batch);
      batch = [];
      batchBytes = 0;
    }
    batch.push(item);
    batchBytes += bytes;
  }
  if (batch.length > 0) batches.push(batch);
  return { batches, oversized };
}

/** A dead letter as a SendMessageBatch entry: the body untouched, the reason and the source id as attributes. */
function deadLetterEntry(letter: DeadLetter, id: string) {
  return {
    Id: id,
    MessageBody: letter.body,
    MessageAttributes: {
      [DEAD_LETTER_REASON_ATTRIBUTE]: { DataType: 'String', StringValue: letter.reason.slice(0, 4096) },
      [DEAD_LETTER_MESSAGE_ID_ATTRIBUTE]: { DataType: 'String', StringValue: letter.messageId },
    },
  };
}

/** Bytes an entry counts against SQS's limits: its body, and each attribute's name, type and value. */
function entryBytes(entry: ReturnType<typeof deadLetterEntry>): number {
  let bytes = Buffer.byteLength(entry.MessageBody);
  for (const [name, value] of Object.entries(entry.MessageAttributes)) {
    bytes += Buffer.byteLength(name) + Buffer.byteLength(value.DataType) + Buffer.byteLength(value.StringValue);
  }
  return bytes;
}

export class SqsDeadLetterQueue implements DeadLetterQueue {
  constructor(
    private readonly client: SQSClient,
    private readonly queueUrl: string,
    /** Each SendMessageBatch gets `timeoutMs`. */
    private readonly deadlines: SqsDeadlines = { timeoutMs: DEFAULT_SQS_TIMEOUT_MS },
  ) {}

  /**
   * Sends letters in requests of at most 10 entries and 1 MiB. Entries SQS refuses as the
   * sender's fault, and letters too large for any request, are refused for good; the first
   * failure of a whole request stops the rest, which stay to be tried again.
   */
  async forward(letters: readonly DeadLetter[]): Promise<ForwardResult> {
    const entries = letters.map((letter, i) => ({ letter, entry: deadLetterEntry(letter, String(i)) }));
    const { batches, oversized } = batchesBySize(entries, (e) => entryBytes(e.entry), SQS_MAX_BATCH, SQS_MAX_BATCH_BYTES);
    const sent: string[] = [];
    const refused = oversized.map((e) => ({
      messageId: e.letter.messageId,
      reason: `too large to forward: ${entryBytes(e.entry)} bytes with its attributes, more than a request can carry (${SQS_MAX_BATCH_BYTES})`,
    }));
    const unsent: string[] = [];
    for (const batch of batches) {
      let response;
      try {
        response = await callSqs(
          'SendMessageBatch (dead-letter queue)',
          (abortSignal) => this.client.send(new SendMessageBatchCommand({ QueueUrl: this.queueUrl, Entries: batch.map((e) => e.entry) }), { abortSignal }),
          this.deadlines.timeoutMs,
        );
      } catch (err) {
        // Letters of a request that may have arrived are not sent again: forwarding is at most once.
        return { sent, refused, failure: err, uncertain: mayHaveArrived(err) ? batch.map((e) => e.letter.messageId) : [] };
      }
      const failed = new Map((response.Failed ?? []).map((f) => [f.Id, f]));
      for (const { letter, entry } of batch) {
        const failure = failed.get(entry.Id);
        if (failure === undefined) sent.push(letter.messageId);
        else if (classifyBatchEntry(failure) === 'row-refused') refused.push({ messageId: letter.messageId, reason: `${failure.Code ?? 'refused'}: ${failure.Message ?? ''}` });
        else unsent.push(`${failure.Code ?? 'unknown'}`);
      }
      if (unsent.length > 0) {
        // Not the sender's fault: SQS's own, which a later try can get past.
        const failure = new SourceError(`the dead-letter queue did not take ${unsent.length} message(s): ${unsent[0]}`, { cause: response.Failed, type: unsent[0] });
        return { sent, refused, failure };
      }
    }
    return { sent, refused };
  }
}

