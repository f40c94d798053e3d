/**
 * The pipeline's own receive path, built exactly as src/run.ts builds it (createQueue, with the
 * lean client or the tuned SDK client), for the queue ceilings 1b and 1c.
 */
import type { RunConfig } from '../src/config.js';
import type { Queue } from '../src/source/queue.js';
import type { StaticCredentials } from '../src/source/aws.js';
import { createQueue } from '../src/source/clients.js';

export interface PipelineQueue {
  readonly queue: Queue;
  /** Releases the clients (sockets) behind the queue. */
  close(): void;
}

/** What run.ts reads from its config to build the queue. */
export type PipelineQueueConfig = Pick<RunConfig, 'sqs' | 'receiveConcurrency' | 'sqsClient' | 'sqsTimeoutSeconds'>;

export async function createPipelineQueue(config: PipelineQueueConfig, credentials?: StaticCredentials): Promise<PipelineQueue> {
  // As in src/run.ts runPipeline(): same factory, same connection limit.
  const clients = await createQueue(config.sqs, {
    connections: config.receiveConcurrency * 2 + 4,
    client: config.sqsClient,
    timeoutMs: config.sqsTimeoutSeconds * 1000,
    ...(credentials === undefined ? {} : { credentials }),
  });
  return { queue: clients.queue, close: () => void clients.close() };
}
