/**
 * Queue ceiling: nothing but ReceiveMessage(10) and DeleteMessageBatch, in `--concurrency`
 * loops, until `--messages` messages are deleted. `--client stock` uses the stock
 * `@aws-sdk/client-sqs` SQSClient at its defaults, the way a consumer is usually built;
 * `--client pipeline` uses the pipeline's own Queue (createPipelineQueue). Prints one JSON line
 * with the messages, the time and the CPU of the measured window.
 */
import { DeleteMessageBatchCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { parseArgs } from 'node:util';
import { EMULATOR_CREDENTIALS } from '../src/embedded/sqs.js';
import type { MessageRef, Queue } from '../src/source/sqs.js';
import { createPipelineQueue } from './pipeline-queue.js';

export interface CeilingReport {
  readonly ceiling: 'stock' | 'pipeline';
  readonly messages: number;
  readonly receives: number;
  readonly emptyReceives: number;
  readonly elapsedMs: number;
  readonly cpuSeconds: number;
}

const WAIT_TIME_SECONDS = 20;

/** Receive and delete through the stock SDK client, as a hand-written consumer does. */
function stockQueue(endpoint: string, queueUrl: string): { queue: Pick<Queue, 'receive' | 'delete'>; close(): void } {
  const client = new SQSClient({ region: 'us-east-1', endpoint, credentials: EMULATOR_CREDENTIALS });
  return {
    queue: {
      async receive(options) {
        const response = await client.send(
          new ReceiveMessageCommand({
            QueueUrl: queueUrl,
            MaxNumberOfMessages: options.maxMessages,
            WaitTimeSeconds: options.waitTimeSeconds,
            MessageSystemAttributeNames: ['SentTimestamp', 'ApproximateReceiveCount'],
          }),
          { abortSignal: options.signal },
        );
        return (response.Messages ?? []).map((m) => ({
          messageId: m.MessageId ?? '',
          receiptHandle: m.ReceiptHandle ?? '',
          body: m.Body ?? '',
          sentTimestampMs: undefined,
          receiveCount: 1,
        }));
      },
      async delete(messages: readonly MessageRef[]) {
        const response = await client.send(
          new DeleteMessageBatchCommand({
            QueueUrl: queueUrl,
            Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.receiptHandle })),
          }),
        );
        return (response.Failed ?? []).map((f) => messages[Number(f.Id)]?.messageId ?? '');
      },
    },
    close: () => client.destroy(),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      client: { type: 'string' },
      endpoint: { type: 'string' },
      'queue-url': { type: 'string' },
      messages: { type: 'string' },
      concurrency: { type: 'string', default: '16' },
    },
  });
  const ceiling = values.client === 'stock' ? 'stock' : values.client === 'pipeline' ? 'pipeline' : undefined;
  const endpoint = values.endpoint;
  const queueUrl = values['queue-url'];
  const expected = Number(values.messages);
  const concurrency = Number(values.concurrency);
  if (ceiling === undefined || endpoint === undefined || queueUrl === undefined || !(expected > 0) || !(concurrency > 0)) {
    throw new Error('usage: queue-ceiling --client stock|pipeline --endpoint URL --queue-url URL --messages N [--concurrency 16]');
  }
  const { queue, close } =
    ceiling === 'stock'
      ? stockQueue(endpoint, queueUrl)
      : createPipelineQueue({ sqs: { queueUrl, region: 'us-east-1', endpoint }, receiveConcurrency: concurrency }, EMULATOR_CREDENTIALS);

  const done = new AbortController();
  let deleted = 0;
  let receives = 0;
  let emptyReceives = 0;
  let finishedAt = 0;
  const cpuBefore = process.cpuUsage();
  const startedAt = performance.now();
  const loop = async () => {
    while (!done.signal.aborted) {
      let messages;
      try {
        messages = await queue.receive({ maxMessages: 10, waitTimeSeconds: WAIT_TIME_SECONDS, signal: done.signal });
      } catch (err) {
        if (done.signal.aborted) return;
        throw err;
      }
      receives += 1;
      if (messages.length === 0) {
        emptyReceives += 1;
        continue;
      }
      const failed = await queue.delete(messages);
      deleted += messages.length - failed.length;
      if (deleted >= expected && finishedAt === 0) {
        finishedAt = performance.now();
        done.abort();
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  const cpu = process.cpuUsage(cpuBefore);
  close();
  const report: CeilingReport = {
    ceiling,
    messages: deleted,
    receives,
    emptyReceives,
    elapsedMs: finishedAt - startedAt,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`queue-ceiling: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
