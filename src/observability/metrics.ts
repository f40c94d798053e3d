/**
 * Prometheus metrics of `run`, served at `/metrics`.
 *
 * Counts the pipeline already keeps (`Pipeline.stats`, `Pipeline.inFlight`) are read when a
 * scrape asks for them, through prom-client `collect()` callbacks, so the message path pays
 * nothing for them. What the stats do not hold (write latency, batch sizes, rejections by
 * reason) is observed by `MeteredSink`, a decorator around the sink, once per write statement.
 *
 * Labels are bounded and never carry message content: a rejection is counted under the
 * category of its reason (`rejectionCategory`), never its text, which may name values.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Sink } from '../sink/postgres.js';
import type { WriteResult } from '../sink/write-batch.js';
import type { QueueDepth, QueueMessage } from '../source/queue.js';
import type { Outcome } from '../transform/transform.js';
import type { PipelineStats } from '../pipeline.js';

/** What the metrics read from a running pipeline at scrape time. */
export interface PipelineView {
  readonly stats: Readonly<PipelineStats>;
  readonly inFlight: { readonly messages: number; readonly bytes: number };
}

/** Fields a rejection reason can start with; anything else is counted as `other`. */
const FIELD_CATEGORIES = ['user_id', 'device_type', 'ip', 'locale', 'device_id', 'app_version'] as const;

export const REJECTION_CATEGORIES = [
  ...FIELD_CATEGORIES,
  'not_json',
  'not_object',
  'postgres_refused',
  'poison',
  'other',
] as const;
export type RejectionCategory = (typeof REJECTION_CATEGORIES)[number];

/**
 * The bounded label of a rejection reason. Reasons are written by login-etl itself (transform,
 * pipeline, sink) and begin with the field at fault or a fixed phrase; this maps them onto a
 * fixed set, so neither cardinality nor content can come from a message.
 */
export function rejectionCategory(reason: string): RejectionCategory {
  if (reason.startsWith('body is not valid JSON')) return 'not_json';
  if (reason.startsWith('message ')) return 'not_object';
  if (reason.startsWith('Postgres refused')) return 'postgres_refused';
  if (/^received \d+ times without being committed/.test(reason)) return 'poison';
  const first = /^([a-z_]+)[ .]/.exec(reason)?.[1];
  return (FIELD_CATEGORIES as readonly string[]).includes(first ?? '') ? (first as RejectionCategory) : 'other';
}

export interface Metrics {
  readonly registry: Registry;
  /** Reads counts from this pipeline from now on. */
  attach(pipeline: PipelineView): void;
  /** The latest approximate queue depth, from the dependency monitor. */
  setQueueDepth(depth: QueueDepth): void;
  /** Wraps a sink so that its writes are timed and their rejections counted. */
  meter(sink: Sink): Sink;
  /** Observes the event lag of messages just committed: from SQS's SentTimestamp to now. */
  observeCommitted(messages: readonly QueueMessage[]): void;
}

/** Buckets for one write statement: a few ms on a warm local database up to retries of seconds. */
const WRITE_SECONDS_BUCKETS = [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/**
 * A statement holds the messages of one or more receives (10 at most each), up to
 * --max-batch-messages (500 by default); a trickle and splits around refused rows make small ones.
 */
const BATCH_SIZE_BUCKETS = [1, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 10_000];
/**
 * From SentTimestamp to commit: tens of milliseconds when keeping up (the target is a p99 under
 * 250 ms, so the buckets are fine around it), up to minutes behind a backlog or an outage.
 */
export const EVENT_LAG_SECONDS_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 10, 30, 60, 300, 900];

/** A registry of its own per process (and per test), never prom-client's global one. */
export function createMetrics(): Metrics {
  const registry = new Registry();
  let pipeline: PipelineView | undefined;
  const stat = (name: keyof PipelineStats) => pipeline?.stats[name] ?? 0;

  /** A counter whose value is a pipeline stat, read when scraped. */
  const statCounter = (name: string, help: string, key: keyof PipelineStats) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(stat(key));
      },
    });

  statCounter('login_etl_messages_received_total', 'Messages received from SQS.', 'received');
  statCounter('login_etl_messages_written_total', 'Rows committed to user_logins.', 'written');
  statCounter('login_etl_duplicates_skipped_total', 'Messages skipped because their id was already in the ledger (redeliveries).', 'duplicates');
  statCounter('login_etl_batches_total', 'Batches committed and acknowledged.', 'batches');
  statCounter('login_etl_write_failures_total', 'Attempts to commit a batch that failed, transient or broken; the batch is held and retried.', 'writeFailures');
  statCounter('login_etl_delete_failures_total', 'Messages whose delete from SQS failed after their commit (the ledger skips their redelivery).', 'deleteFailures');
  statCounter('login_etl_messages_released_total', 'Messages handed back to the queue uncommitted.', 'released');
  statCounter('login_etl_visibility_extensions_total', 'Visibility timeouts extended for messages still being written.', 'visibilityExtensions');
  statCounter('login_etl_dead_lettered_total', 'Rejected messages forwarded to the dead-letter queue.', 'deadLettered');
  statCounter('login_etl_dead_letters_unforwardable_total', 'Rejected messages the dead-letter queue refuses for good (recorded in forward_error, not retried).', 'unforwardable');
  statCounter('login_etl_dead_letters_unconfirmed_total', 'Rejected messages whose send to the dead-letter queue got no answer: maybe forwarded, not sent again (at most once).', 'unconfirmed');

  const rejected = new Counter({
    name: 'login_etl_messages_rejected_total',
    help: 'Messages committed to login_etl.rejected_messages, by category of reason.',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  // Every category starts at 0, so rate() and absent() behave before the first rejection.
  for (const reason of REJECTION_CATEGORIES) rejected.inc({ reason }, 0);

  new Gauge({
    name: 'login_etl_messages_in_flight',
    help: 'Messages received and not yet deleted or released.',
    registers: [registry],
    collect() {
      this.set(pipeline?.inFlight.messages ?? 0);
    },
  });
  new Gauge({
    name: 'login_etl_bytes_in_flight',
    help: 'Body bytes of the messages in flight.',
    registers: [registry],
    collect() {
      this.set(pipeline?.inFlight.bytes ?? 0);
    },
  });
  const depth = new Gauge({
    name: 'login_etl_queue_messages',
    help: 'Approximate messages in the queue, by state, as SQS last reported them (polled every 5 s).',
    labelNames: ['state'] as const,
    registers: [registry],
  });
  const writeSeconds = new Histogram({
    name: 'login_etl_batch_write_seconds',
    help: 'Duration of one batch write statement (one transaction), by result.',
    labelNames: ['result'] as const,
    buckets: WRITE_SECONDS_BUCKETS,
    registers: [registry],
  });
  const batchSize = new Histogram({
    name: 'login_etl_batch_size_messages',
    help: 'Messages per committed write statement.',
    buckets: BATCH_SIZE_BUCKETS,
    registers: [registry],
  });

  const eventLag = new Histogram({
    name: 'login_etl_event_lag_seconds',
    help: "Time from SQS's SentTimestamp of a message to the commit of its batch (wall clocks of SQS and this host).",
    buckets: EVENT_LAG_SECONDS_BUCKETS,
    registers: [registry],
  });

  const observeWrite = (outcomes: readonly Outcome[], result: WriteResult, seconds: number) => {
    writeSeconds.observe({ result: 'committed' }, seconds);
    batchSize.observe(outcomes.length);
    // Rejections whose id was already in the ledger are duplicates, not new rejections; the
    // statement reports only how many were new, so the first that many are counted.
    const reasons = outcomes.flatMap((o) => (o.kind === 'rejected' ? [o.reason] : [])).slice(0, result.rejected);
    for (const reason of reasons) rejected.inc({ reason: rejectionCategory(reason) });
  };

  return {
    registry,
    attach(view) {
      pipeline = view;
    },
    observeCommitted(messages) {
      const now = Date.now();
      // A clock behind SQS's would give a negative lag: counted as 0 rather than dropped.
      for (const m of messages) if (m.sentTimestampMs !== undefined) eventLag.observe(Math.max(0, now - m.sentTimestampMs) / 1000);
    },
    setQueueDepth(d) {
      depth.set({ state: 'visible' }, d.visible);
      depth.set({ state: 'in_flight' }, d.inFlight);
      depth.set({ state: 'delayed' }, d.delayed);
    },
    meter(sink) {
      return {
        async write(outcomes) {
          const started = performance.now();
          try {
            const result = await sink.write(outcomes);
            observeWrite(outcomes, result, (performance.now() - started) / 1000);
            return result;
          } catch (err) {
            writeSeconds.observe({ result: 'failed' }, (performance.now() - started) / 1000);
            throw err;
          }
        },
        claimForwarding: (messageIds, claimant) => sink.claimForwarding(messageIds, claimant),
        releaseForwardingClaims: (messageIds, claimant) => sink.releaseForwardingClaims(messageIds, claimant),
        recordForwarding: (record) => sink.recordForwarding(record),
      };
    },
  };
}
