/**
 * The composition root of `run`: builds the clients from the parsed config, prepares the
 * database, runs the pipeline with its helpers (health endpoints, dependency monitor, ledger
 * pruning), and releases everything in reverse order.
 */
import type pg from 'pg';
import type { RunConfig } from './config.js';
import { describeError } from './errors.js';
import { classify, retryWhileTransient } from './failure.js';
import { Health } from './observability/health.js';
import { startHttpServer } from './observability/http.js';
import type { Logger } from './observability/logger.js';
import type { ProgressReporter } from './observability/progress.js';
import { Pipeline, sleep, type PipelineStats } from './pipeline.js';
import { migrate } from './sink/migrate.js';
import { sealLegacyBodies } from './sink/rejected.js';
import { createPool, PgSink, statementCanceller } from './sink/postgres.js';
import { pruneLedger } from './sink/prune.js';
import type { Queue, QueueDepth, QueueSettings } from './source/queue.js';
import type { StaticCredentials } from './source/aws.js';
import { createQueue } from './source/clients.js';
import { createMasker } from './transform/mask.js';

export interface RunOptions {
  readonly log: Logger;
  /** Aborting it stops receiving; batches in flight get the shutdown timeout to finish. */
  readonly stop: AbortSignal;
  /** Only for the embedded emulator; real deployments use the SDK's credential chain. */
  readonly credentials?: StaticCredentials;
  /** Called once the HTTP server listens, with its port. */
  readonly onListening?: (port: number) => void;
  /** A progress display (`run --drain` on a terminal). */
  readonly progress?: ProgressReporter | undefined;
}

export interface RunSummary extends PipelineStats {
  readonly elapsedMs: number;
}

/**
 * Fallbacks when the queue's attributes cannot be read at start-up: SQS's default visibility
 * timeout, and its longest retention (14 days), so the ledger is never pruned while a message
 * of a longer-lived queue could still be delivered again.
 */
const FALLBACK_QUEUE_SETTINGS: QueueSettings = { visibilityTimeoutSeconds: 30, retentionSeconds: 1_209_600 };
const MONITOR_INTERVAL_MS = 5_000;
/** How long the hard stop may take to cancel the statements under way. */
const CANCEL_TIMEOUT_MS = 1_000;

export async function runPipeline(config: RunConfig, options: RunOptions): Promise<RunSummary> {
  const { log, progress } = options;
  const started = performance.now();
  const release: (() => Promise<void> | void)[] = [];
  if (progress !== undefined) release.push(() => progress.stop());
  try {
    const pool = createPool(config.databaseUrl, { max: config.pgPoolMax, log, statementTimeoutMs: config.statementTimeoutSeconds * 1000 });
    const cancelQueries = statementCanceller(pool, config.databaseUrl, { timeoutMs: CANCEL_TIMEOUT_MS });
    release.push(() => pool.end());
    const sqsClients = await createQueue(config.sqs, {
      connections: config.receiveConcurrency * 2 + 4,
      client: config.sqsClient,
      timeoutMs: config.sqsTimeoutSeconds * 1000,
      log,
      ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
    });
    release.push(() => sqsClients.close());
    const { queue } = sqsClients;

    const health = new Health();
    // prom-client is loaded only when metrics are served.
    const metrics = config.http?.metrics === true ? (await import('./observability/metrics.js')).createMetrics() : undefined;
    if (config.http !== undefined) {
      const server = await startHttpServer(health, { ...config.http, metrics: metrics?.registry });
      release.push(() => server.close());
      options.onListening?.(server.port);
      log.info({ port: server.port, metrics: metrics !== undefined }, metrics === undefined ? 'serving /healthz and /readyz' : 'serving /healthz, /readyz and /metrics');
    }
    // Postgres may still be starting, restarting or failing over: start-up waits for it as the
    // pipeline would later (unready on /readyz), and a drain gives up after the same timeout.
    const waitForPostgres = <T>(step: () => Promise<T>, message: string, signal = options.stop) =>
      retryWhileTransient('postgres', step, message, {
        log,
        health,
        signal,
        giveUpAfterMs: config.drain ? config.unreachableTimeoutSeconds * 1000 : undefined,
      });
    // The schema and the queue's settings are asked for at once: neither waits for the other. A
    // queue that can never be read ends the start at once, and with it the wait for Postgres.
    const queueFailed = new AbortController();
    const [{ applied }, queueSettings] = await Promise.all([
      waitForPostgres(() => migrate(pool), 'Postgres is not reachable yet; waiting to check the schema', AbortSignal.any([options.stop, queueFailed.signal])),
      readQueueSettings(queue, log).catch((err: unknown) => {
        queueFailed.abort();
        throw err;
      }),
    ]);
    if (applied.length > 0) log.info({ applied }, 'migrations applied');
    // The monitor reads the depth only every few seconds; a display wants it from the start.
    if (progress !== undefined) await queue.depth().then((d) => progress.depth(d), () => undefined);
    const visibilityTimeoutSeconds = config.visibilityTimeoutSeconds ?? queueSettings.visibilityTimeoutSeconds;

    const background = new AbortController();
    const helpers = [
      monitor(pool, queue, health, log, background.signal, (depth) => {
        metrics?.setQueueDepth(depth);
        progress?.depth(depth);
      }),
      pruneEvery(pool, config, queueSettings, log, background.signal),
    ];
    // Released in reverse: abort the helpers, then wait for them.
    release.push(() => Promise.all(helpers).then(() => undefined));
    release.push(() => background.abort());

    for (const warning of config.keyWarnings ?? []) log.warn(warning);
    const masker = await createMasker(config.maskMode, config.piiKey);
    await waitForPostgres(() => sealLegacyBodies(pool, masker.bodies, log), 'Postgres is not reachable; waiting to seal rejected bodies stored before sealing');
    const deadLetters = config.deadLetterQueueUrl === undefined ? undefined : await sqsClients.deadLetters(config.deadLetterQueueUrl);
    log.info(
      {
        receiveConcurrency: config.receiveConcurrency,
        waitTimeSeconds: config.waitTimeSeconds,
        visibilityTimeoutSeconds,
        drain: config.drain,
        deadLetterQueue: deadLetters !== undefined,
        maskMode: masker.mode,
        keyId: masker.keyId,
      },
      'pipeline started',
    );
    const sink = new PgSink(pool);
    const pipeline = new Pipeline(
      {
        queue,
        sink: metrics === undefined ? sink : metrics.meter(sink),
        masker,
        log,
        deadLetters,
        health,
        cancelQueries,
        onCommitted: metrics === undefined ? undefined : (messages) => metrics.observeCommitted(messages),
      },
      {
        receiveConcurrency: config.receiveConcurrency,
        waitTimeSeconds: config.waitTimeSeconds,
        drain: config.drain,
        visibilityTimeoutSeconds,
        receiveVisibilityTimeoutSeconds: config.visibilityTimeoutSeconds,
        maxInFlightMessages: config.maxInFlightMessages,
        maxInFlightBytes: config.maxInFlightBytes,
        maxReceiveCount: config.maxReceiveCount,
        shutdownTimeoutMs: config.shutdownTimeoutSeconds * 1000,
        maxBatchMessages: config.maxBatchMessages,
        flushIntervalMs: config.flushIntervalMs,
        writeConcurrency: config.writeConcurrency,
        unreachableTimeoutMs: config.unreachableTimeoutSeconds * 1000,
      },
    );
    metrics?.attach(pipeline);
    progress?.start(pipeline);
    const stats = await pipeline.run(options.stop);
    const summary = { ...stats, elapsedMs: Math.round(performance.now() - started) };
    progress?.finish(summary);
    log.info(summary, 'pipeline stopped');
    return summary;
  } finally {
    // Every step runs even if one before it fails, so no socket or connection is left open.
    for (const step of release.reverse()) {
      try {
        await step();
      } catch (err) {
        log.warn({ err: describeError(err) }, 'shutdown step failed');
      }
    }
  }
}

/** The queue's visibility timeout and retention; fails fast when the queue can never be read. */
async function readQueueSettings(queue: Queue, log: Logger): Promise<QueueSettings> {
  try {
    return await queue.settings();
  } catch (err) {
    // A queue that does not exist, or that this process may not read, fails at once.
    if (classify(err, 'sqs').kind === 'broken') throw err;
    log.warn({ err: describeError(err) }, 'queue not reachable yet; receive loops will keep trying');
    return FALLBACK_QUEUE_SETTINGS;
  }
}

/** Probes both dependencies every few seconds, so readiness follows them even when idle. */
async function monitor(
  pool: pg.Pool,
  queue: Queue,
  health: Health,
  log: Logger,
  signal: AbortSignal,
  onDepth: (depth: QueueDepth) => void,
): Promise<void> {
  while (!signal.aborted) {
    await sleep(MONITOR_INTERVAL_MS, signal);
    if (signal.aborted) return;
    await Promise.all([
      pool.query('SELECT 1').then(
        () => health.report('postgres', true),
        (err: unknown) => health.report('postgres', false, describeError(err)),
      ),
      queue.depth().then(
        (depth) => {
          health.report('sqs', true);
          onDepth(depth);
          log.debug({ ...depth }, 'queue depth');
        },
        (err: unknown) => health.report('sqs', false, describeError(err)),
      ),
    ]);
  }
}

/** Prunes the ledger at start-up and then every `pruneIntervalSeconds`. */
async function pruneEvery(pool: pg.Pool, config: RunConfig, queue: QueueSettings, log: Logger, signal: AbortSignal): Promise<void> {
  // Rows younger than the queue's retention can still meet a redelivery; the hour covers clock skew.
  const olderThanSeconds = config.ledgerRetentionSeconds ?? queue.retentionSeconds + 3_600;
  while (!signal.aborted) {
    try {
      const pruned = await pruneLedger(pool, { olderThanSeconds, signal });
      if (pruned !== null && pruned > 0) log.info({ pruned, olderThanSeconds }, 'ledger pruned');
    } catch (err) {
      log.warn({ err: describeError(err) }, 'ledger pruning failed; trying again later');
    }
    await sleep(config.pruneIntervalSeconds * 1000, signal);
  }
}
