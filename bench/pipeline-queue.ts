/**
 * The pipeline's own receive path, built exactly as src/run.ts builds it (createQueue with the
 * lean path), for the queue ceiling "(b) the pipeline's receive path".
 */
import type { RunConfig } from '../src/config.js';
import { createQueue, type Queue, type StaticCredentials } from '../src/source/sqs.js';

export interface PipelineQueue {
  readonly queue: Queue;
  /** Releases the clients (sockets) behind the queue. */
  close(): void;
}

/** What run.ts reads from its config to build the queue. */
export type PipelineQueueConfig = Pick<RunConfig, 'sqs' | 'receiveConcurrency'>;

export function createPipelineQueue(config: PipelineQueueConfig, credentials?: StaticCredentials): PipelineQueue {
  // As in src/run.ts runPipeline(): same factory, same connection limit.
  const clients = createQueue(config.sqs, {
    connections: config.receiveConcurrency * 2 + 4,
    ...(credentials === undefined ? {} : { credentials }),
  });
  return { queue: clients.queue, close: () => void clients.close() };
}
