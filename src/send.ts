/**
 * `login-etl send`: one SQS message per line of a JSON Lines file, with SendMessageBatch.
 * Bodies are sent as they are, malformed ones included, so any stream can be replayed.
 */
import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { open, type FileHandle } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { ConfigError, SourceError } from './errors.js';
import { classifyBatchEntry } from './failure.js';
import { plural } from './plural.js';
import { SQS_MAX_BATCH } from './source/queue.js';
import { sqsError } from './source/sqs.js';

/** Stays under the 256 KiB batch limit that LocalStack and older queues still enforce. */
const MAX_BATCH_BYTES = 256 * 1024;
const CONCURRENT_BATCHES = 8;
const ATTEMPTS = 5;

/** The input of `send`: `-` is `stdin`. A file that cannot be read is bad usage, named with its error code. */
export async function openLines(file: string, stdin: Readable): Promise<Readable> {
  if (file === '-') return stdin;
  let handle: FileHandle | undefined;
  try {
    handle = await open(file, 'r');
    // Opening a directory succeeds; reading it would fail later, as a run-time error.
    if ((await handle.stat()).isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
    return handle.createReadStream({ encoding: 'utf8' });
  } catch (err) {
    await handle?.close();
    throw new ConfigError('--file', `cannot read ${file} (${(err as { code?: string }).code ?? 'error'})`);
  }
}

/** Sends every non-empty line; resolves with the number sent. */
export async function sendLines(client: SQSClient, queueUrl: string, input: Readable | Iterable<string>): Promise<number> {
  const inFlight = new Set<Promise<void>>();
  // A failed batch leaves the set as soon as it settles, so its error is kept here to be thrown.
  let failure: unknown;
  let sent = 0;
  let batch: string[] = [];
  let batchBytes = 0;

  const flush = async () => {
    if (batch.length === 0) return;
    const bodies = batch;
    batch = [];
    batchBytes = 0;
    const task = sendBatch(client, queueUrl, bodies).then(
      () => {
        sent += bodies.length;
      },
      (err: unknown) => {
        failure ??= err;
      },
    );
    inFlight.add(task);
    void task.finally(() => inFlight.delete(task));
    if (inFlight.size >= CONCURRENT_BATCHES) await Promise.race(inFlight);
    if (failure !== undefined) throw failure;
  };

  const lines = Symbol.iterator in input ? input : createInterface({ input, crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    const bytes = Buffer.byteLength(line);
    if (batch.length === SQS_MAX_BATCH || (batch.length > 0 && batchBytes + bytes > MAX_BATCH_BYTES)) await flush();
    batch.push(line);
    batchBytes += bytes;
  }
  await flush();
  await Promise.all(inFlight);
  if (failure !== undefined) throw failure;
  return sent;
}

async function sendBatch(client: SQSClient, queueUrl: string, bodies: readonly string[]): Promise<void> {
  let pending = bodies.map((body, i) => ({ Id: String(i), MessageBody: body }));
  for (let attempt = 1; pending.length > 0; attempt += 1) {
    let response;
    try {
      response = await client.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: pending }));
    } catch (err) {
      // The SDK has retried already; `send` is run by a person, who sees the error.
      throw sqsError('SendMessageBatch', err);
    }
    const failed = new Set((response.Failed ?? []).map((f) => f.Id));
    const permanent = (response.Failed ?? []).filter((f) => classifyBatchEntry(f) === 'row-refused');
    if (permanent.length > 0) {
      throw new SourceError(`SQS refused ${plural(permanent.length, 'message')}: ${permanent[0]?.Code ?? 'unknown'}`, { cause: permanent, type: permanent[0]?.Code });
    }
    pending = pending.filter((entry) => failed.has(entry.Id));
    if (pending.length > 0 && attempt >= ATTEMPTS) {
      throw new SourceError(`SQS did not accept ${plural(pending.length, 'message')} after ${ATTEMPTS} attempts`, { cause: response.Failed });
    }
  }
}
