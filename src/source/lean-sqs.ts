/**
 * A lean path for the three calls the pipeline makes per message: ReceiveMessage,
 * DeleteMessageBatch and ChangeMessageVisibilityBatch. Each is one signed POST in SQS's JSON
 * protocol, sent with undici over kept-alive connections and signed (SigV4) with aws4, with
 * credentials from the AWS SDK's own provider chain. The stock client's middleware stack
 * (retries, checksums, endpoint rules, serde) costs several times the CPU the request itself
 * does, and the SDK's signer alone costs about three times what aws4 does per request; the
 * pipeline has its own retry policy, and the other, rare calls still go through the SDK.
 */
import type { AwsCredentialIdentityProvider } from '@smithy/types';
import aws4 from 'aws4';
import { Pool } from 'undici';
import { SourceError } from '../errors.js';
import type { QueueMessage } from '../transform/transform.js';
import { chunks, SQS_MAX_BATCH, toQueueMessage, type MessageRef, type ReceiveOptions } from './sqs.js';

interface SqsJsonMessage {
  MessageId?: string;
  ReceiptHandle?: string;
  Body?: string;
  Attributes?: Record<string, string>;
}

interface BatchResult {
  Failed?: { Id?: string; Code?: string; SenderFault?: boolean }[];
}

/** Distinct ReceiveMessage bodies whose signatures are kept; a pipeline sends one or two. */
const SIGNATURES_KEPT = 8;

/** The hot SQS operations over undici; failures are SourceErrors with SQS's status and error type. */
export class LeanSqsCalls {
  readonly #pool: Pool;
  readonly #credentials: AwsCredentialIdentityProvider;
  readonly #region: string | (() => Promise<string>);
  #regionName: string | undefined;
  readonly #url: URL;
  readonly #signedThisSecond = new Map<string, { second: number; headers: Record<string, string> }>();

  constructor(options: {
    endpoint: string;
    /** A region, or a provider of it (asked once). */
    region: string | (() => Promise<string>);
    credentials: AwsCredentialIdentityProvider;
    connections: number;
  }) {
    this.#url = new URL(options.endpoint);
    this.#pool = new Pool(this.#url.origin, { connections: options.connections, pipelining: 1, keepAliveTimeout: 30_000 });
    this.#credentials = options.credentials;
    this.#region = options.region;
  }

  async receive(queueUrl: string, options: ReceiveOptions): Promise<QueueMessage[]> {
    const response = await this.#call<{ Messages?: SqsJsonMessage[] }>(
      'ReceiveMessage',
      {
        QueueUrl: queueUrl,
        MaxNumberOfMessages: options.maxMessages,
        WaitTimeSeconds: options.waitTimeSeconds,
        MessageSystemAttributeNames: ['SentTimestamp', 'ApproximateReceiveCount'],
        ...(options.visibilityTimeoutSeconds === undefined ? {} : { VisibilityTimeout: options.visibilityTimeoutSeconds }),
      },
      options.signal,
    );
    return (response.Messages ?? []).flatMap((m) => toQueueMessage(m) ?? []);
  }

  /** Deletes in batches of 10, all at once; resolves with the ids SQS refused. */
  async delete(queueUrl: string, messages: readonly MessageRef[], signal?: AbortSignal): Promise<string[]> {
    return await this.#batched('DeleteMessageBatch', queueUrl, messages, (m, i) => ({ Id: String(i), ReceiptHandle: m.receiptHandle }), signal);
  }

  async changeVisibility(queueUrl: string, messages: readonly MessageRef[], timeoutSeconds: number, signal?: AbortSignal): Promise<string[]> {
    return await this.#batched('ChangeMessageVisibilityBatch', queueUrl, messages, (m, i) => ({
      Id: String(i),
      ReceiptHandle: m.receiptHandle,
      VisibilityTimeout: timeoutSeconds,
    }), signal);
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }

  async #batched(
    action: string,
    queueUrl: string,
    messages: readonly MessageRef[],
    entry: (m: MessageRef, i: number) => Record<string, unknown>,
    signal: AbortSignal | undefined,
  ): Promise<string[]> {
    const results = await Promise.all(
      chunks(messages, SQS_MAX_BATCH).map(async (batch) => {
        const response = await this.#call<BatchResult>(action, { QueueUrl: queueUrl, Entries: batch.map(entry) }, signal);
        return (response.Failed ?? []).flatMap((f) => batch[Number(f.Id)]?.messageId ?? []);
      }),
    );
    return results.flat();
  }

  async #call<T>(action: string, input: Record<string, unknown>, signal?: AbortSignal): Promise<T> {
    const body = JSON.stringify(input);
    const headers = this.#keptSignature(action, body) ?? (await this.#sign(action, body));
    let response: { statusCode: number; text: string };
    try {
      response = await this.#post(headers, body, signal);
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new SourceError(`SQS ${action} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    const { statusCode, text } = response;
    if (statusCode >= 200 && statusCode < 300) {
      try {
        return (text === '' ? {} : JSON.parse(text)) as T;
      } catch {
        // The parser's message quotes the text around the error, which can be a message body.
        throw new SourceError(`SQS ${action} failed: the response (HTTP ${statusCode}, ${text.length} characters) is not valid JSON`, { cause: { statusCode }, type: 'MalformedResponse' });
      }
    }
    let type = `HTTP ${statusCode}`;
    let message = '';
    try {
      const error = JSON.parse(text) as { __type?: string; message?: string; Message?: string };
      type = (error.__type ?? type).split('#').pop() ?? type;
      message = error.message ?? error.Message ?? '';
    } catch {
      // Not JSON (a proxy's error page): the status says enough.
    }
    throw new SourceError(`SQS ${action} failed: ${type}${message ? `: ${message}` : ''}`, { cause: { statusCode, type }, status: statusCode, type });
  }

  /**
   * Signed headers for a request. SigV4 signs the date to the second, so a request whose bytes
   * repeat (every ReceiveMessage of a loop does) gets the same signature within a second: those
   * are kept for that second instead of being signed again.
   */
  #keptSignature(action: string, body: string): Record<string, string> | undefined {
    if (action !== 'ReceiveMessage') return undefined;
    const kept = this.#signedThisSecond.get(body);
    return kept !== undefined && kept.second === Math.floor(Date.now() / 1000) ? kept.headers : undefined;
  }

  async #sign(action: string, body: string): Promise<Record<string, string>> {
    const second = Math.floor(Date.now() / 1000);
    const key = action === 'ReceiveMessage' ? body : undefined;
    const credentials = await this.#credentials();
    this.#regionName ??= typeof this.#region === 'string' ? this.#region : await this.#region();
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

  /**
   * One POST through undici's dispatcher with a handler that only gathers the body: the
   * `request()` API's stream and promise plumbing cost more than the rest of the call.
   */
  #post(headers: Record<string, string>, body: string, signal: AbortSignal | undefined): Promise<{ statusCode: number; text: string }> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortError(signal));
        return;
      }
      let statusCode = 0;
      const chunks: Buffer[] = [];
      let abort: ((err?: Error) => void) | undefined;
      const onAbort = () => abort?.(abortError(signal));
      signal?.addEventListener('abort', onAbort, { once: true });
      const settle = () => signal?.removeEventListener('abort', onAbort);
      this.#pool.dispatch(
        { origin: this.#url.origin, method: 'POST', path: '/', headers, body },
        {
          onConnect: (abortRequest) => {
            abort = abortRequest;
            if (signal?.aborted) abortRequest(abortError(signal));
          },
          onHeaders: (status) => {
            statusCode = status;
            return true;
          },
          onData: (chunk) => {
            chunks.push(chunk);
            return true;
          },
          onComplete: () => {
            settle();
            resolve({ statusCode, text: chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8') });
          },
          onError: (err) => {
            settle();
            reject(err);
          },
        },
      );
    });
  }
}

function abortError(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  return reason instanceof Error ? reason : new DOMException('This operation was aborted', 'AbortError');
}

/** SigV4's timestamp (YYYYMMDDTHHMMSSZ) of a whole second. */
function amzDate(second: number): string {
  return new Date(second * 1000).toISOString().replace(/[:-]|\.\d{3}/g, '');
}
