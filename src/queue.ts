/** `login-etl queue create`: the queue the walkthroughs need, with no other tool. */
import { CreateQueueCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { ConfigError } from './errors.js';
import { sqsError } from './source/sqs.js';

/** SQS's rule for queue names: 1 to 80 letters, digits, hyphens and underscores, `.fifo` for FIFO queues. */
const QUEUE_NAME = /^[A-Za-z0-9_-]{1,80}$/;

export function assertQueueName(name: string, setting: string): void {
  const base = name.endsWith('.fifo') ? name.slice(0, -'.fifo'.length) : name;
  if (!QUEUE_NAME.test(base)) throw new ConfigError(setting, 'must be a queue name of 1 to 80 letters, digits, hyphens or underscores (and .fifo for a FIFO queue)');
}

/** The queue's name: the last segment of its URL. */
export function queueNameOf(queueUrl: string): string {
  return new URL(queueUrl).pathname.split('/').filter((part) => part !== '').at(-1) ?? '';
}

/** Creates the queue, or finds it if it exists with the same attributes (CreateQueue is idempotent); resolves with its URL. */
export async function createQueue(client: SQSClient, name: string): Promise<string> {
  try {
    const { QueueUrl } = await client.send(
      new CreateQueueCommand({ QueueName: name, ...(name.endsWith('.fifo') ? { Attributes: { FifoQueue: 'true' } } : {}) }),
    );
    if (QueueUrl === undefined) throw new Error('CreateQueue returned no queue URL');
    return QueueUrl;
  } catch (err) {
    throw sqsError('CreateQueue', err);
  }
}
