/**
 * The lean SQS client: the calls the pipeline makes (ReceiveMessage, DeleteMessageBatch,
 * ChangeMessageVisibilityBatch, GetQueueAttributes), each one signed POST in SQS's JSON protocol,
 * sent with node:http over kept-alive connections (the HTTP stack the SDK client uses too) and
 * signed (SigV4) with aws4, with credentials from the AWS SDK's own provider chain. It does what
 * the SDK client does for these calls and that the pipeline relies on: deadlines, clock-skew
 * correction from the server's Date header, fresh credentials after an expired-token or skew
 * error, and every failure as a SourceError
 * (classified in src/failure.ts like the SDK's). Why it exists at all is measured in
 * docs/benchmarks.md (consumer CPU per message against the SDK client tuned for this job).
 */
import type { AwsCredentialIdentityProvider } from '@smithy/types';
import aws4 from 'aws4';
import type { Agent, IncomingMessage } from 'node:http';
import { SourceError } from '../errors.js';
import { isClockSkew, needsFreshCredentials } from '../failure.js';
import { http, https } from '../node-http.js';
import { connectHost } from './aws.js';
import {
  chunks,
  receiveDeadlineMs,
  RECEIVE_ATTRIBUTE_NAMES,
  SQS_MAX_BATCH,
  toQueueMessage,
  withDeadline,
  type MessageRef,
  type Queue,
  type QueueDepth,
  type QueueMessage,
  type QueueSettings,
  type ReceiveOptions,
  type SqsDeadlines,
} from './queue.js';

interface BatchResult {
  Failed?: { Id?: string; Code?: string; SenderFault?: boolean }[];
}

/** Distinct ReceiveMessage bodies whose signatures are kept; a pipeline sends one or two. */
const SIGNATURES_KEPT = 8;

/**
 * Largest response read: ten messages of SQS's largest size (1 MiB), their JSON escaping and
 * attributes, with room to spare. A longer answer is cut off and is an error, not memory.
 */
export const MAX_RESPONSE_BYTES = 32 * 1_048_576;

/** SigV4 accepts a signature up to 5 minutes off; the SDK corrects its clock from 4 minutes, and so does this. */
const SKEW_THRESHOLD_MS = 240_000;

export interface LeanSqsOptions {
  readonly queueUrl: string;
  readonly endpoint: string;
  /** A region, or a provider of it (asked once). */
  readonly region: string | (() => Promise<string>);
  /** Called with `{ forceRefresh: true }` after an expired-credentials or clock-skew error. */
  readonly credentials: AwsCredentialIdentityProvider;
  readonly connections: number;
  readonly deadlines: SqsDeadlines;
  readonly maxResponseBytes?: number;
}

interface Response {
  readonly statusCode: number;
  readonly text: string;
  readonly date: string | undefined;
}

/** The pipeline's Queue over node:http and aws4; failures are SourceErrors with SQS's status and error type. */
export class LeanSqsQueue implements Queue {
  readonly #agent: Agent;
  readonly #request: typeof http.request;
  readonly #queueUrl: string;
  readonly #credentials: AwsCredentialIdentityProvider;
  readonly #region: string | (() => Promise<string>);
  readonly #deadlines: SqsDeadlines;
  readonly #maxResponseBytes: number;
  #regionName: string | undefined;
  readonly #url: URL;
  /** The host to connect to: the URL's, with an IPv6 address unbracketed (the Host header keeps the brackets). */
  readonly #hostname: string;
  readonly #signedThisSecond = new Map<string, { second: number; headers: Record<string, string> }>();
  /** Server time minus local time, learned from a skew error's Date header. */
  #clockOffsetMs = 0;
  #refreshCredentials = false;

  constructor(options: LeanSqsOptions) {
    this.#queueUrl = options.queueUrl;
    this.#url = new URL(options.endpoint);
    this.#hostname = connectHost(this.#url);
    const tls = this.#url.protocol === 'https:';
    // One keep-alive agent for this queue's connections, as the SDK client's (src/source/sqs.ts).
    this.#agent = new (tls ? https : http).Agent({ keepAlive: true, maxSockets: options.connections });
    this.#request = tls ? https.request : http.request;
    this.#credentials = options.credentials;
    this.#region = options.region;
    this.#deadlines = options.deadlines;
    this.#maxResponseBytes = options.maxResponseBytes ?? MAX_RESPONSE_BYTES;
  }

  /** Server time minus this machine's, as last corrected (0 until a skew error says otherwise). */
  get clockOffsetMs(): number {
    return this.#clockOffsetMs;
  }

  async receive(options: ReceiveOptions): Promise<QueueMessage[]> {
    const response = await this.#call(
      'ReceiveMessage',
      {
        QueueUrl: this.#queueUrl,
        MaxNumberOfMessages: options.maxMessages,
        WaitTimeSeconds: options.waitTimeSeconds,
        MessageSystemAttributeNames: RECEIVE_ATTRIBUTE_NAMES,
        AttributeNames: RECEIVE_ATTRIBUTE_NAMES,
        ...(options.visibilityTimeoutSeconds === undefined ? {} : { VisibilityTimeout: options.visibilityTimeoutSeconds }),
      },
      receiveDeadlineMs(this.#deadlines, options.waitTimeSeconds),
      options.signal,
    );
    const messages = response.Messages ?? [];
    if (!Array.isArray(messages)) throw malformed('ReceiveMessage', 'Messages is not a list');
    return messages.flatMap((m: unknown) => {
      if (!isRecord(m)) throw malformed('ReceiveMessage', 'a message is not an object');
      const { MessageId, ReceiptHandle, Body, Attributes } = m;
      if (typeof MessageId !== 'string' || typeof ReceiptHandle !== 'string') return [];
      if ((Body !== undefined && typeof Body !== 'string') || (Attributes !== undefined && !isRecord(Attributes))) {
        throw malformed('ReceiveMessage', 'a message has a body or attributes of the wrong type');
      }
      return toQueueMessage({ MessageId, ReceiptHandle, Body, Attributes: stringValues(Attributes) }) ?? [];
    });
  }

  /** Deletes in batches of 10, all at once; resolves with the ids SQS refused. */
  async delete(messages: readonly MessageRef[], signal?: AbortSignal): Promise<string[]> {
    return await this.#batched('DeleteMessageBatch', messages, signal, (m, i) => ({ Id: String(i), ReceiptHandle: m.receiptHandle }));
  }

  async changeVisibility(messages: readonly MessageRef[], timeoutSeconds: number, signal?: AbortSignal): Promise<string[]> {
    return await this.#batched('ChangeMessageVisibilityBatch', messages, signal, (m, i) => ({
      Id: String(i),
      ReceiptHandle: m.receiptHandle,
      VisibilityTimeout: timeoutSeconds,
    }));
  }

  async depth(): Promise<QueueDepth> {
    const a = await this.#attributes(['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed']);
    return {
      visible: Number(a.ApproximateNumberOfMessages ?? 0),
      inFlight: Number(a.ApproximateNumberOfMessagesNotVisible ?? 0),
      delayed: Number(a.ApproximateNumberOfMessagesDelayed ?? 0),
    };
  }

  async settings(): Promise<QueueSettings> {
    const a = await this.#attributes(['VisibilityTimeout', 'MessageRetentionPeriod']);
    return { visibilityTimeoutSeconds: Number(a.VisibilityTimeout ?? 30), retentionSeconds: Number(a.MessageRetentionPeriod ?? 345_600) };
  }

  close(): Promise<void> {
    this.#agent.destroy();
    return Promise.resolve();
  }

  async #attributes(names: readonly string[]): Promise<Record<string, string>> {
    const response = await this.#call('GetQueueAttributes', { QueueUrl: this.#queueUrl, AttributeNames: names }, this.#deadlines.timeoutMs);
    const attributes = response.Attributes ?? {};
    if (!isRecord(attributes)) throw malformed('GetQueueAttributes', 'Attributes is not an object');
    return stringValues(attributes);
  }

  async #batched(
    action: string,
    messages: readonly MessageRef[],
    signal: AbortSignal | undefined,
    entry: (m: MessageRef, i: number) => Record<string, unknown>,
  ): Promise<string[]> {
    const results = await Promise.all(
      chunks(messages, SQS_MAX_BATCH).map(async (batch) => {
        const response = (await this.#call(action, { QueueUrl: this.#queueUrl, Entries: batch.map(entry) }, this.#deadlines.timeoutMs, signal)) as BatchResult;
        const failed = response.Failed ?? [];
        if (!Array.isArray(failed)) throw malformed(action, 'Failed is not a list');
        return failed.flatMap((f) => batch[Number(f.Id)]?.messageId ?? []);
      }),
    );
    return results.flat();
  }

  async #call(action: string, input: Record<string, unknown>, deadlineMs: number, signal?: AbortSignal): Promise<Record<string, unknown>> {
    const abortSignal = withDeadline(deadlineMs, signal);
    try {
      return await this.#attempt(action, input, abortSignal, true);
    } catch (err) {
      if (signal?.aborted) throw err;
      if (abortSignal.aborted) throw new SourceError(`SQS ${action} failed: no answer within ${deadlineMs} ms`, { cause: err, type: 'TimeoutError' });
      const failure = err instanceof SourceError ? err : new SourceError(`SQS ${action} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      if (needsFreshCredentials(failure)) this.#refreshCredentials = true;
      throw failure;
    }
  }

  async #attempt(action: string, input: Record<string, unknown>, signal: AbortSignal, mayRetrySkew: boolean): Promise<Record<string, unknown>> {
    const body = JSON.stringify(input);
    const signingMs = Date.now() + this.#clockOffsetMs;
    const headers = this.#keptSignature(action, body, signingMs) ?? (await this.#sign(action, body, signingMs));
    const { statusCode, text, date } = await this.#post(headers, body, signal);
    if (statusCode >= 200 && statusCode < 300) {
      let parsed: unknown;
      try {
        parsed = text === '' ? {} : JSON.parse(text);
      } catch {
        // The parser's message quotes the text around the error, which can be a message body.
        throw malformed(action, `the response (HTTP ${statusCode}, ${text.length} characters) is not valid JSON`);
      }
      if (!isRecord(parsed)) throw malformed(action, `the response (HTTP ${statusCode}) is not a JSON object`);
      return parsed;
    }
    let type = `HTTP ${statusCode}`;
    let message = '';
    try {
      const error = JSON.parse(text) as { __type?: unknown; message?: unknown; Message?: unknown };
      if (typeof error.__type === 'string') type = error.__type.split('#').pop() ?? type;
      const said = error.message ?? error.Message;
      if (typeof said === 'string') message = said;
    } catch {
      // Not JSON (a proxy's error page): the status says enough.
    }
    const failure = new SourceError(`SQS ${action} failed: ${type}${message ? `: ${message}` : ''}`, { cause: { statusCode, type }, status: statusCode, type });
    if (isClockSkew(failure) && this.#correctClock(date, signingMs) && mayRetrySkew) {
      // Like the SDK: sign again with the server's time, once.
      return await this.#attempt(action, input, signal, false);
    }
    throw failure;
  }

  /** Learns the offset from the server's Date header; true if the request was signed far enough off to be corrected. */
  #correctClock(date: string | undefined, signingMs: number): boolean {
    const serverMs = date === undefined ? Number.NaN : Date.parse(date);
    if (Number.isNaN(serverMs)) return false;
    if (Math.abs(serverMs - signingMs) < SKEW_THRESHOLD_MS) return false;
    this.#clockOffsetMs = serverMs - Date.now();
    this.#signedThisSecond.clear();
    return true;
  }

  /**
   * Signed headers for a request. SigV4 signs the date to the second, so a request whose bytes
   * repeat (every ReceiveMessage of a loop does) gets the same signature within a second: those
   * are kept for that second instead of being signed again.
   */
  #keptSignature(action: string, body: string, signingMs: number): Record<string, string> | undefined {
    if (action !== 'ReceiveMessage' || this.#refreshCredentials) return undefined;
    const kept = this.#signedThisSecond.get(body);
    return kept !== undefined && kept.second === Math.floor(signingMs / 1000) ? kept.headers : undefined;
  }

  async #sign(action: string, body: string, signingMs: number): Promise<Record<string, string>> {
    const second = Math.floor(signingMs / 1000);
    const key = action === 'ReceiveMessage' ? body : undefined;
    const refresh = this.#refreshCredentials;
    this.#refreshCredentials = false;
    let credentials;
    try {
      credentials = await (refresh ? this.#credentials({ forceRefresh: true }) : this.#credentials());
      this.#regionName ??= typeof this.#region === 'string' ? this.#region : await this.#region();
    } catch (err) {
      // As the SDK path reports them: CredentialsProviderError (broken), a region ConfigError (broken), others by what they are.
      if (refresh) this.#refreshCredentials = true;
      throw new SourceError(`SQS ${action} failed: ${err instanceof Error ? err.message : String(err)}`, {
        cause: err,
        type: err instanceof Error ? err.name : undefined,
      });
    }
    const signed = aws4.sign(
      {
        service: 'sqs',
        region: this.#regionName,
        method: 'POST',
        host: this.#url.host,
        path: '/',
        headers: { 'content-type': 'application/x-amz-json-1.0', 'x-amz-target': `AmazonSQS.${action}`, 'x-amz-date': amzDate(second) },
        body,
      },
      {
        accessKeyId: credentials.accessKeyId,
        secretAccessKey: credentials.secretAccessKey,
        ...(credentials.sessionToken === undefined ? {} : { sessionToken: credentials.sessionToken }),
      },
    );
    const headers = signed.headers as Record<string, string>;
    if (key !== undefined) {
      if (this.#signedThisSecond.size >= SIGNATURES_KEPT) this.#signedThisSecond.clear();
      this.#signedThisSecond.set(key, { second, headers });
    }
    return headers;
  }

  /** One POST over the agent's connections, its body gathered; a body longer than the bound is cut off. */
  #post(headers: Record<string, string>, body: string, signal: AbortSignal): Promise<Response> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(abortError(signal));
        return;
      }
      let settled = false;
      const settle = (outcome: () => void) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        outcome();
      };
      const fail = (err: Error) => settle(() => reject(err));
      const limit = this.#maxResponseBytes;
      const request = this.#request(
        { hostname: this.#hostname, port: this.#url.port, method: 'POST', path: '/', headers, agent: this.#agent },
        (response: IncomingMessage) => {
          const statusCode = response.statusCode ?? 0;
          const date = statusCode < 200 || statusCode >= 300 ? response.headers.date : undefined;
          const chunks: Buffer[] = [];
          let bytes = 0;
          response.on('data', (chunk: Buffer) => {
            bytes += chunk.length;
            if (bytes > limit) {
              fail(new SourceError(`SQS's response is longer than ${limit} bytes; cut off`, { cause: undefined, status: statusCode, type: 'ResponseTooLarge' }));
              request.destroy();
              return;
            }
            chunks.push(chunk);
          });
          response.on('end', () =>
            settle(() => resolve({ statusCode, date, text: chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8') })),
          );
          // A connection cut before the body's end is an error here ('aborted').
          response.on('error', fail);
        },
      );
      const onAbort = () => {
        fail(abortError(signal));
        request.destroy();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      request.on('error', fail);
      request.end(body);
    });
  }
}

function malformed(action: string, what: string): SourceError {
  return new SourceError(`SQS ${action} failed: ${what}`, { cause: undefined, type: 'MalformedResponse' });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The string-valued entries of an attribute map (SQS sends only strings; anything else is dropped). */
function stringValues(record: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(record ?? {})) if (typeof value === 'string') out[name] = value;
  return out;
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new DOMException('This operation was aborted', 'AbortError');
}

/** SigV4's timestamp (YYYYMMDDTHHMMSSZ) of a whole second. */
function amzDate(second: number): string {
  return new Date(second * 1000).toISOString().replace(/[:-]|\.\d{3}/g, '');
}
