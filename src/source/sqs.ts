/**
 * The SQS side of the pipeline behind a narrow interface, so the pipeline can be driven by the
 * real queue or by an in-memory fake in tests.
 */
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SQSClient,
  type Message,
} from '@aws-sdk/client-sqs';
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { AwsCredentialIdentityProvider } from '@smithy/types';
import ipaddr from 'ipaddr.js';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { queueUrlRegion, settingLabel, type SqsConfig } from '../config.js';
import { ConfigError, SourceError } from '../errors.js';
import { classifyBatchEntry } from '../failure.js';
import type { QueueMessage } from '../transform/transform.js';
import { LeanSqsCalls } from './lean-sqs.js';

/** Largest batch SQS accepts for receive, delete and change-visibility. */
export const SQS_MAX_BATCH = 10;

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

/** What the pipeline needs from a queue. */
export interface Queue {
  receive(options: ReceiveOptions): Promise<QueueMessage[]>;
  /** Deletes messages; resolves with the ids SQS refused to delete. `signal` aborts the call. */
  delete(messages: readonly MessageRef[], signal?: AbortSignal): Promise<string[]>;
  /** Sets the visibility timeout of messages; resolves with the ids SQS refused. `signal` aborts the call. */
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
  /** What stopped the others, if any were neither sent nor refused: they may be tried again. */
  readonly failure?: unknown;
}

/** Where rejected messages are forwarded, when a dead-letter queue is configured. */
export interface DeadLetterQueue {
  forward(letters: readonly DeadLetter[]): Promise<ForwardResult>;
}

/** Message attributes of a forwarded message; SQS caps an attribute value at 256 KiB. */
export const DEAD_LETTER_REASON_ATTRIBUTE = 'login_etl_reason';
export const DEAD_LETTER_MESSAGE_ID_ATTRIBUTE = 'login_etl_message_id';

/** Largest SendMessageBatch request SQS takes: bodies and message attributes of all its entries. */
export const SQS_MAX_BATCH_BYTES = 1_048_576;

const AWS_HOST = /(^|\.)amazonaws\.com(\.cn)?$|(^|\.)api\.aws$/;

/**
 * The endpoint every request must go to. An explicit endpoint always wins: newer LocalStack and
 * emulators hand out queue URLs whose hosts do not resolve. Without one, a queue URL that is
 * not on an AWS host (LocalStack's `http://localhost:4566/000000000000/q`) is its own endpoint,
 * and an AWS queue URL is left to the SDK's own endpoint resolution.
 */
export function resolveSqsEndpoint(config: SqsConfig): string | undefined {
  if (config.endpoint !== undefined) return config.endpoint;
  const url = new URL(config.queueUrl);
  return AWS_HOST.test(url.hostname) ? undefined : url.origin;
}

/**
 * Whether an endpoint reaches only this machine or a LocalStack: a loopback address (127.0.0.0/8,
 * ::1), `localhost` and its subdomains, LocalStack's Compose service name `localstack`, or
 * `localhost.localstack.cloud` and its subdomains (public names for 127.0.0.1).
 */
export function isLocalEndpoint(endpoint: string): boolean {
  const host = new URL(endpoint).hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (host === 'localhost' || host.endsWith('.localhost') || host === 'localstack') return true;
  if (host === 'localhost.localstack.cloud' || host.endsWith('.localhost.localstack.cloud')) return true;
  return ipaddr.isValid(host) && ipaddr.process(host).range() === 'loopback';
}

/** Looks up the region the SDK would use on its own (AWS profile, instance metadata); undefined if none. */
export type RegionLookup = () => Promise<string | undefined>;

/** The SDK's own region chain, as a client given no region resolves it. */
export async function sdkRegion(): Promise<string | undefined> {
  const probe = new SQSClient({});
  try {
    return await probe.config.region();
  } catch {
    return undefined;
  } finally {
    probe.destroy();
  }
}

/**
 * The region requests are signed for: the one given (--region, AWS_REGION, AWS_DEFAULT_REGION);
 * else the SDK's own (`fromSdk`); else the one the queue URL names; else us-east-1 when every
 * request goes to a local endpoint. An SDK region that differs from the one an AWS queue URL names
 * is refused, as a given one is when the config is parsed: SQS would refuse every request.
 */
export function chooseSqsRegion(config: SqsConfig, fromSdk: string | undefined): string {
  if (config.region !== undefined) return config.region;
  const named = queueUrlRegion(config.queueUrl);
  if (fromSdk !== undefined) {
    if (named?.host === 'aws' && named.region !== fromSdk) {
      throw new ConfigError(
        settingLabel('region'),
        `is not set, and the SDK's region (${fromSdk}, from the AWS profile or instance metadata) differs from ${named.region}, where ${settingLabel('queueUrl')} names the queue; set ${named.region}`,
      );
    }
    return fromSdk;
  }
  if (named !== undefined) return named.region;
  const endpoint = resolveSqsEndpoint(config);
  if (endpoint !== undefined && isLocalEndpoint(endpoint)) return 'us-east-1';
  throw new ConfigError(
    settingLabel('region'),
    `is required: the SDK found no region (AWS_DEFAULT_REGION, the AWS profile, instance metadata) and ${settingLabel('queueUrl')} names none`,
  );
}

/** chooseSqsRegion as a provider: the SDK's region is looked up once, on first use, and only if none is given. */
export function sqsRegionProvider(config: SqsConfig, lookUp: RegionLookup = sdkRegion): () => Promise<string> {
  let region: Promise<string> | undefined;
  return () => (region ??= config.region !== undefined ? Promise.resolve(config.region) : lookUp().then((found) => chooseSqsRegion(config, found)));
}

export interface StaticCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

/** What awslocal signs with when nothing else is configured; LocalStack and emulators check none. */
export const LOCAL_DUMMY_CREDENTIALS: StaticCredentials = { accessKeyId: 'test', secretAccessKey: 'test' };

/**
 * The SDK's credential chain (environment, profile, SSO, web identity, container or instance
 * role), with one fallback: when it finds nothing and every request goes to a local endpoint
 * (isLocalEndpoint), requests are signed with LOCAL_DUMMY_CREDENTIALS, as awslocal does, and
 * `onDummy` is told once. Any other endpoint gets the chain's failure, with where it looked.
 */
export function sqsCredentialProvider(
  config: SqsConfig,
  options: { onDummy: (endpoint: string) => void; chain?: AwsCredentialIdentityProvider },
): AwsCredentialIdentityProvider {
  const chain = options.chain ?? defaultProvider();
  const endpoint = resolveSqsEndpoint(config);
  const local = endpoint !== undefined && isLocalEndpoint(endpoint) ? endpoint : undefined;
  let dummy = false;
  return async (properties) => {
    if (dummy) return LOCAL_DUMMY_CREDENTIALS;
    try {
      return await chain(properties);
    } catch (err) {
      if (!(err instanceof Error) || err.name !== 'CredentialsProviderError') throw err;
      if (local === undefined) {
        const missing = new Error(
          `no usable AWS credentials (${err.message}); the SDK looks in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws, SSO, web identity, and container or instance roles`,
          { cause: err },
        );
        // The SDK's name for it: the failure policy counts it broken, never retried as transient.
        missing.name = 'CredentialsProviderError';
        throw missing;
      }
      if (!dummy) {
        dummy = true;
        options.onDummy(local);
      }
      return LOCAL_DUMMY_CREDENTIALS;
    }
  };
}

/** The part of a logger the clients use: one info line about dummy credentials. */
export interface InfoLog {
  info(fields: Record<string, unknown>, msg: string): void;
}

export interface SqsClientOptions {
  readonly maxSockets: number;
  /** Fixed credentials (the embedded emulator's); without them, sqsCredentialProvider. */
  readonly credentials?: StaticCredentials;
  /** Where the one line about dummy credentials for a local endpoint goes, at info; stderr without it. */
  readonly log?: InfoLog;
}

/**
 * An SDK client bound to the right endpoint, signing for the region sqsRegionProvider finds.
 * Credentials come from the SDK's standard chain (sqsCredentialProvider) unless given.
 */
export function createSqsClient(config: SqsConfig, options: SqsClientOptions): SQSClient {
  const endpoint = resolveSqsEndpoint(config);
  const agentOptions = { keepAlive: true, maxSockets: options.maxSockets };
  const { log } = options;
  const onDummy = (local: string) => {
    const message = 'no AWS credentials found; signing with the dummy credentials test/test, since the SQS endpoint is local';
    if (log !== undefined) log.info({ endpoint: local }, message);
    else process.stderr.write(`login-etl: ${message} (${local})\n`);
  };
  return new SQSClient({
    region: config.region ?? sqsRegionProvider(config),
    credentials: options.credentials ?? sqsCredentialProvider(config, { onDummy }),
    ...(endpoint === undefined ? {} : { endpoint, useQueueUrlAsEndpoint: false }),
    requestHandler: new NodeHttpHandler({
      httpAgent: new HttpAgent(agentOptions),
      httpsAgent: new HttpsAgent(agentOptions),
      connectionTimeout: 5_000,
    }),
  });
}

/** A received SQS message (SDK or JSON protocol shape) as the pipeline sees it; undefined without id or handle. */
export function toQueueMessage(message: Message): QueueMessage | undefined {
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

/**
 * The queue the pipeline reads. With `lean`, the per-message calls (receive, delete, change
 * visibility) take the lean path; everything else goes through the SDK client.
 */
export class SqsQueue implements Queue {
  constructor(
    private readonly client: SQSClient,
    private readonly queueUrl: string,
    private readonly lean?: LeanSqsCalls,
  ) {}

  async receive(options: ReceiveOptions): Promise<QueueMessage[]> {
    if (this.lean) return await this.lean.receive(this.queueUrl, options);
    const response = await callSqs('ReceiveMessage', () =>
      this.client.send(
        new ReceiveMessageCommand({
          QueueUrl: this.queueUrl,
          MaxNumberOfMessages: options.maxMessages,
          WaitTimeSeconds: options.waitTimeSeconds,
          ...(options.visibilityTimeoutSeconds === undefined ? {} : { VisibilityTimeout: options.visibilityTimeoutSeconds }),
          MessageSystemAttributeNames: ['SentTimestamp', 'ApproximateReceiveCount'],
        }),
        { abortSignal: options.signal },
      ),
    );
    return (response.Messages ?? []).flatMap((m) => toQueueMessage(m) ?? []);
  }

  async delete(messages: readonly MessageRef[], signal?: AbortSignal): Promise<string[]> {
    if (this.lean) return await this.lean.delete(this.queueUrl, messages, signal);
    const failed: string[] = [];
    for (const batch of chunks(messages, SQS_MAX_BATCH)) {
      const response = await callSqs('DeleteMessageBatch', () =>
        this.client.send(
          new DeleteMessageBatchCommand({
            QueueUrl: this.queueUrl,
            Entries: batch.map((m, i) => ({ Id: String(i), ReceiptHandle: m.receiptHandle })),
          }),
          { abortSignal: signal },
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
    if (this.lean) return await this.lean.changeVisibility(this.queueUrl, messages, timeoutSeconds, signal);
    const failed: string[] = [];
    for (const batch of chunks(messages, SQS_MAX_BATCH)) {
      const response = await callSqs('ChangeMessageVisibilityBatch', () =>
        this.client.send(
          new ChangeMessageVisibilityBatchCommand({
            QueueUrl: this.queueUrl,
            Entries: batch.map((m, i) => ({ Id: String(i), ReceiptHandle: m.receiptHandle, VisibilityTimeout: timeoutSeconds })),
          }),
          { abortSignal: signal },
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
    const response = await callSqs('GetQueueAttributes', () =>
      this.client.send(
        new GetQueueAttributesCommand({
          QueueUrl: this.queueUrl,
          AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
        }),
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
    const response = await callSqs('GetQueueAttributes', () =>
      this.client.send(
        new GetQueueAttributesCommand({ QueueUrl: this.queueUrl, AttributeNames: ['VisibilityTimeout', 'MessageRetentionPeriod'] }),
      ),
    );
    return {
      visibilityTimeoutSeconds: Number(response.Attributes?.VisibilityTimeout ?? 30),
      retentionSeconds: Number(response.Attributes?.MessageRetentionPeriod ?? 345_600),
    };
  }

}

/** Wraps an SDK call so that its failure is a SourceError with SQS's status and error type. */
async function callSqs<T>(operation: string, send: () => Promise<T>): Promise<T> {
  try {
    return await send();
  } catch (err) {
    if (err instanceof Error && err.name === 'AbortError') throw err;
    throw sqsError(operation, err);
  }
}

/** The SourceError for an SDK failure of `operation`: what SQS answered, if it answered. */
export function sqsError(operation: string, err: unknown): SourceError {
  const status = (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
  return new SourceError(`SQS ${operation} failed: ${err instanceof Error ? err.message : String(err)}`, {
    cause: err,
    status,
    type: err instanceof Error ? err.name : undefined,
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
        response = await callSqs('SendMessageBatch (dead-letter queue)', () =>
          this.client.send(new SendMessageBatchCommand({ QueueUrl: this.queueUrl, Entries: batch.map((e) => e.entry) })),
        );
      } catch (err) {
        return { sent, refused, failure: err };
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

export interface QueueClients {
  readonly queue: SqsQueue;
  /** The SDK client, for the calls that do not take the lean path (dead-letter queue, attributes). */
  readonly client: SQSClient;
  close(): Promise<void>;
}

/**
 * The queue as `run` uses it: the SDK client for rare calls and, unless `lean` is false, the lean
 * path for the per-message ones. Both send every request to the same endpoint.
 */
export function createQueue(
  config: SqsConfig,
  options: { connections: number; credentials?: StaticCredentials; lean?: boolean; log?: InfoLog },
): QueueClients {
  const client = createSqsClient(config, {
    maxSockets: options.connections,
    ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
    ...(options.log === undefined ? {} : { log: options.log }),
  });
  const lean =
    options.lean === false
      ? undefined
      : new LeanSqsCalls({
          endpoint: resolveSqsEndpoint(config) ?? new URL(config.queueUrl).origin,
          // The client's own region and credentials: both paths sign alike.
          region: () => client.config.region(),
          credentials: () => client.config.credentials(),
          connections: options.connections,
        });
  return {
    queue: new SqsQueue(client, config.queueUrl, lean),
    client,
    async close() {
      await lean?.close();
      client.destroy();
    },
  };
}
