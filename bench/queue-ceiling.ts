/**
 * Queue ceiling: nothing but ReceiveMessage(10) and DeleteMessageBatch, in `--concurrency`
 * loops, until `--messages` messages are deleted. `--client stock` uses the stock
 * `@aws-sdk/client-sqs` SQSClient at its defaults, the way a consumer is usually built;
 * `--client pipeline` uses the pipeline's own Queue on the lean client (createPipelineQueue), and
 * `--client sdk` the same Queue on the SDK client tuned for the pipeline. Prints one JSON line
 * with the messages, the time and the CPU of the measured window.
 */
import { DeleteMessageBatchCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { parseArgs } from 'node:util';
import { EMULATOR_CREDENTIALS } from '../src/embedded/sqs.js';
import type { MessageRef, Queue } from '../src/source/queue.js';
import { drainInLoops } from './drain-loops.js';
import { createPipelineQueue } from './pipeline-queue.js';

export interface CeilingReport {
  readonly ceiling: 'stock' | 'pipeline' | 'sdk';
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
  const ceiling = values.client === 'stock' || values.client === 'pipeline' || values.client === 'sdk' ? values.client : undefined;
  const endpoint = values.endpoint;
  const queueUrl = values['queue-url'];
  const expected = Number(values.messages);
  const concurrency = Number(values.concurrency);
  if (ceiling === undefined || endpoint === undefined || queueUrl === undefined || !(expected > 0) || !(concurrency > 0)) {
    throw new Error('usage: queue-ceiling --client stock|pipeline|sdk --endpoint URL --queue-url URL --messages N [--concurrency 16]');
  }
  const { queue, close } =
    ceiling === 'stock'
      ? stockQueue(endpoint, queueUrl)
      : await createPipelineQueue(
          { sqs: { queueUrl, region: 'us-east-1', endpoint }, receiveConcurrency: concurrency, sqsClient: ceiling === 'sdk' ? 'sdk' : 'lean', sqsTimeoutSeconds: 10 },
          EMULATOR_CREDENTIALS,
        );

  let receives = 0;
  let emptyReceives = 0;
  const measure = await drainInLoops(concurrency, expected, async (signal) => {
    const messages = await queue.receive({ maxMessages: 10, waitTimeSeconds: WAIT_TIME_SECONDS, signal });
    receives += 1;
    if (messages.length === 0) {
      emptyReceives += 1;
      return 0;
    }
    const failed = await queue.delete(messages);
    return messages.length - failed.length;
  });
  close();
  const report: CeilingReport = {
    ceiling,
    messages: measure.deleted,
    receives,
    emptyReceives,
    elapsedMs: measure.elapsedMs,
    cpuSeconds: measure.cpuSeconds,
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`queue-ceiling: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
