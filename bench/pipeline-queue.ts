/**
 * The pipeline's own receive path, built exactly as src/run.ts builds it, for the queue
 * ceiling "(b) the pipeline's receive path". When src/ gains another Queue implementation or a
 * factory for it, change the one marked line below and scenario 1b measures that instead.
 */
import type { RunConfig } from '../src/config.js';
import { createSqsClient, SqsQueue, type Queue, type StaticCredentials } from '../src/source/sqs.js';

export interface PipelineQueue {
  readonly queue: Queue;
  /** Releases the client (sockets) behind the queue. */
  close(): void;
}

/** What run.ts reads from its config to build the queue. */
export type PipelineQueueConfig = Pick<RunConfig, 'sqs' | 'receiveConcurrency'>;

export function createPipelineQueue(config: PipelineQueueConfig, credentials?: StaticCredentials): PipelineQueue {
  // As in src/run.ts runPipeline(): same client factory, same socket limit, same Queue class.
  const sqs = createSqsClient(config.sqs, {
    maxSockets: config.receiveConcurrency * 2 + 4,
    ...(credentials === undefined ? {} : { credentials }),
  });
  const queue: Queue = new SqsQueue(sqs, config.sqs.queueUrl); // <- the one line to change for another Queue
  return { queue, close: () => sqs.destroy() };
}
