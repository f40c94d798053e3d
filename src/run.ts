/**
 * The composition root of `run`: builds the clients from the parsed config, prepares the
 * database, runs the pipeline, and releases everything in reverse order.
 */
import type { RunConfig } from './config.js';
import { describeError, SourceError } from './errors.js';
import type { Logger } from './observability/logger.js';
import { Pipeline, type PipelineStats } from './pipeline.js';
import { migrate } from './sink/migrate.js';
import { createPool, PgSink } from './sink/postgres.js';
import { createSqsClient, SqsQueue, type StaticCredentials } from './source/sqs.js';
import { createMasker } from './transform/mask.js';

export interface RunOptions {
  readonly log: Logger;
  /** Aborting it stops receiving; batches in flight are finished. */
  readonly stop: AbortSignal;
  /** Only for the embedded emulator; real deployments use the SDK's credential chain. */
  readonly credentials?: StaticCredentials;
}

export interface RunSummary extends PipelineStats {
  readonly elapsedMs: number;
}

export async function runPipeline(config: RunConfig, options: RunOptions): Promise<RunSummary> {
  const { log } = options;
  const started = performance.now();
  const pool = createPool(config.databaseUrl, { max: config.pgPoolMax, log });
  const sqs = createSqsClient(config.sqs, {
    maxSockets: config.receiveConcurrency * 2 + 4,
    ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
  });
  try {
    const { applied } = await migrate(pool);
    if (applied.length > 0) log.info({ applied }, 'migrations applied');
    const queue = new SqsQueue(sqs, config.sqs.queueUrl);
    await checkQueue(queue, log);
    for (const warning of config.keyWarnings ?? []) log.warn(warning);
    const masker = await createMasker(config.maskMode, config.piiKey);
    log.info(
      {
        receiveConcurrency: config.receiveConcurrency,
        waitTimeSeconds: config.waitTimeSeconds,
        drain: config.drain,
        maskMode: masker.mode,
        keyId: masker.keyId,
      },
      'pipeline started',
    );
    const pipeline = new Pipeline(
      { queue, sink: new PgSink(pool), masker, log },
      { receiveConcurrency: config.receiveConcurrency, waitTimeSeconds: config.waitTimeSeconds, drain: config.drain },
    );
    const stats = await pipeline.run(options.stop);
    const summary = { ...stats, elapsedMs: Math.round(performance.now() - started) };
    log.info(summary, 'pipeline stopped');
    return summary;
  } finally {
    sqs.destroy();
    await pool.end();
  }
}

/** Fails fast when the queue can never be read (no credentials, no such queue, no permission). */
async function checkQueue(queue: SqsQueue, log: Logger): Promise<void> {
  try {
    await queue.depth();
  } catch (err) {
    if (err instanceof SourceError && !err.retryable) throw err;
    log.warn({ err: describeError(err) }, 'queue not reachable yet; receive loops will keep trying');
  }
}
