import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { pino } from 'pino';
import { SinkError, SourceError, UnavailableError } from '../../src/errors.js';
import { backoffMs } from '../../src/failure.js';
import { Health } from '../../src/observability/health.js';
import { Pipeline, type PipelineOptions } from '../../src/pipeline.js';
import type { Sink } from '../../src/sink/postgres.js';
import { PiiKey } from '../../src/transform/key.js';
import { HmacMasker } from '../../src/transform/mask.js';
import { drainPipeline, sinkWith } from '../helpers/drain.js';
import { FakeQueue } from '../helpers/fake-queue.js';
import { loginBody, silentLog } from '../helpers/fixtures.js';
import { MemorySink } from '../helpers/memory-sink.js';

/** Polls `condition` every 10 ms until it holds; fails the test after `timeoutMs`. */
async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await sleep(10);
  }
}

describe('backoffMs', () => {
  it('stays within [0, min(max, base * 2^(attempt-1))]', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 10_000 }), fc.integer({ min: 1, max: 120_000 }), (attempt, baseMs, maxMs) => {
        const cap = Math.min(maxMs, baseMs * 2 ** (attempt - 1));
        const delay = backoffMs(attempt, baseMs, maxMs);
        assert.ok(delay >= 0 && delay <= cap, `backoffMs(${attempt}, ${baseMs}, ${maxMs}) = ${delay}, cap ${cap}`);
      }),
      { numRuns: 5000 },
    );
  });

  it('scales the full-jitter draw by the capped exponential', (t) => {
    t.mock.method(Math, 'random', () => 0.5);
    assert.equal(backoffMs(1, 200, 30_000), 100);
    assert.equal(backoffMs(3, 200, 30_000), 400);
    assert.equal(backoffMs(8, 200, 30_000), 12_800);
    assert.equal(backoffMs(9, 200, 30_000), 15_000); // 200 * 256 = 51,200 is capped at 30,000
    assert.equal(backoffMs(1_000, 200, 30_000), 15_000);
  });

  it('spreads delays over the whole range (full jitter)', () => {
    const delays = Array.from({ length: 2_000 }, () => backoffMs(4, 100, 30_000)); // cap 800
    assert.ok(Math.max(...delays) > 700, `largest ${Math.max(...delays)}`);
    assert.ok(Math.min(...delays) < 100, `smallest ${Math.min(...delays)}`);
    assert.ok(delays.every((d) => d >= 0 && d <= 800));
  });

  it('does not overflow for huge attempt numbers', () => {
    for (let i = 0; i < 100; i += 1) {
      const delay = backoffMs(1e9, 200, 30_000);
      assert.ok(Number.isFinite(delay) && delay >= 0 && delay <= 30_000);
    }
  });
});

/**
 * The pipeline against the in-memory fake queue and sink: the drain's end and its failure, and
 * time measured on a monotonic clock. Postgres and SQS themselves are in the integration tests.
 */
describe('Pipeline on fakes', () => {
  const OPTIONS: PipelineOptions = { receiveConcurrency: 2, waitTimeSeconds: 20, drain: true, visibilityTimeoutSeconds: 30, retryBaseDelayMs: 10, retryMaxDelayMs: 50 };
  const masker = new HmacMasker(new PiiKey(randomBytes(32)));
  const logins = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => loginBody({ user_id: `${prefix}-${i}` }));

  /** A logger whose lines a test can read. */
  function capture(level: 'debug' | 'info' = 'info') {
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    return { log, lines };
  }

  /** The sink, noting the monotonic time of each commit. */
  function timed(sink: MemorySink): { sink: Sink; commits: number[] } {
    const commits: number[] = [];
    return {
      sink: sinkWith(async (outcomes) => {
        const result = await sink.write(outcomes);
        commits.push(performance.now());
        return result;
      }, sink),
      commits,
    };
  }

  /** Receives as the pipeline asked for them: the wait, and whether an abort cut the call short. */
  function recordReceives(queue: FakeQueue): { waitTimeSeconds: number; messages: number; aborted: boolean }[] {
    const seen: { waitTimeSeconds: number; messages: number; aborted: boolean }[] = [];
    const receive = queue.receive.bind(queue);
    queue.receive = async (options) => {
      const messages = await receive(options);
      seen.push({ waitTimeSeconds: options.waitTimeSeconds, messages: messages.length, aborted: options.signal.aborted });
      return messages;
    };
    return seen;
  }

  const connectionRefused = () =>
    new SourceError('SQS ReceiveMessage failed: connect ECONNREFUSED 127.0.0.1:9', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });

  it('a drain ends within 200 ms of its last commit, long polls of 20 s configured, and leaves no long poll behind', async () => {
    const queue = new FakeQueue();
    queue.send(logins('fast', 25));
    const memory = new MemorySink();
    const { sink, commits } = timed(memory);
    const receives = recordReceives(queue);

    const stats = await drainPipeline(new Pipeline({ queue, sink, masker, log: silentLog }, OPTIONS), 20_000);
    const endedAt = performance.now();

    assert.equal(stats.written, 25);
    const sinceLastCommitMs = endedAt - (commits.at(-1) ?? 0);
    assert.ok(sinceLastCommitMs < 200, `the drain ended ${Math.round(sinceLastCommitMs)} ms after its last commit`);
    const firstEmpty = receives.findIndex((r) => r.messages === 0);
    assert.ok(firstEmpty >= 0, 'a receive came back empty before the drain ended');
    assert.deepEqual(
      receives.slice(firstEmpty).filter((r) => r.waitTimeSeconds > 0),
      [],
      'once receives come back empty, a drain polls briefly',
    );
    assert.deepEqual(queue.remaining(), []);
  });

  it('four receive loops never hold more than the in-flight bounds, counted at the queue, whatever sizes SQS hands out', async () => {
    const MiB = 1_048_576;
    const queue = new FakeQueue();
    queue.send(Array.from({ length: 40 }, (_, i) => `${i} `.padEnd(600 * 1024, 'x'))); // 600 KiB each, 24 MiB in all
    queue.send(logins('small', 60));
    // What the process holds, as the queue sees it: received, and not yet deleted or handed back.
    const outstanding = new Map<string, number>();
    let bytes = 0;
    let maxBytes = 0;
    const receive = queue.receive.bind(queue);
    queue.receive = async (options) => {
      const messages = await receive(options);
      for (const m of messages) outstanding.set(m.messageId, Buffer.byteLength(m.body));
      bytes = [...outstanding.values()].reduce((sum, n) => sum + n, 0);
      maxBytes = Math.max(maxBytes, bytes);
      return messages;
    };
    const remove = (ids: readonly string[]) => {
      for (const id of ids) outstanding.delete(id);
    };
    const del = queue.delete.bind(queue);
    queue.delete = async (messages, signal) => {
      remove(messages.map((m) => m.messageId));
      return await del(messages, signal);
    };
    const memory = new MemorySink();
    const slow = sinkWith(async (outcomes) => {
      await sleep(20);
      return await memory.write(outcomes);
    }, memory);

    const stats = await drainPipeline(
      new Pipeline({ queue, sink: slow, masker, log: silentLog }, { ...OPTIONS, receiveConcurrency: 4, maxInFlightMessages: 20, maxInFlightBytes: 4 * MiB, maxBatchMessages: 10 }),
    );

    assert.equal(stats.written + stats.rejected, 100);
    assert.ok(maxBytes <= 4 * MiB, `held ${maxBytes} bytes at once, bound ${4 * MiB}`);
    assert.ok(queue.maxOutstanding <= 20, `held ${queue.maxOutstanding} messages at once, bound 20`);
    assert.ok(maxBytes > 2 * MiB, 'the byte bound was approached, so the check means something');
    assert.deepEqual(queue.remaining(), []);
  });

  it('a drain of an empty queue ends at once, without waiting out a long poll', async () => {
    const queue = new FakeQueue();
    const started = performance.now();
    await drainPipeline(new Pipeline({ queue, sink: new MemorySink(), masker, log: silentLog }, OPTIONS), 20_000);
    const elapsedMs = performance.now() - started;
    assert.ok(elapsedMs < 1_000, `${Math.round(elapsedMs)} ms`);
  });

  it('a drain gives up, naming SQS, once SQS has been unreachable for the timeout; the failure is logged once, not per attempt', async () => {
    const queue = new FakeQueue();
    queue.send(logins('never', 3));
    queue.faults.receive = () => {
      throw connectionRefused();
    };
    const { log, lines } = capture();
    const health = new Health();
    const safety = AbortSignal.timeout(10_000);
    const started = performance.now();

    const err = await new Pipeline({ queue, sink: new MemorySink(), masker, log, health }, { ...OPTIONS, unreachableTimeoutMs: 500, drainCheckIntervalMs: 50 })
      .run(safety)
      .then(
        () => assert.fail('the drain should fail'),
        (e: unknown) => e,
      );

    assert.equal(safety.aborted, false, 'it gave up by itself');
    assert.ok(err instanceof UnavailableError, String(err));
    assert.match(err.message, /^SQS could not be reached for \d+ s \(--unreachable-timeout-seconds\): SQS ReceiveMessage failed: connect ECONNREFUSED/);
    const elapsedMs = performance.now() - started;
    assert.ok(elapsedMs >= 500 && elapsedMs < 3_000, `gave up after ${Math.round(elapsedMs)} ms`);
    assert.ok(queue.receiveAttempts > 5, `${queue.receiveAttempts} receives`);
    assert.equal(lines.filter((l) => l.msg === 'receive failed; backing off').length, 1, 'logged once per change of state');
    assert.equal(health.ready, false);
  });

  it('a drain gives up, naming Postgres, once it has been unreachable for the timeout, and hands the held messages back', async () => {
    const queue = new FakeQueue();
    const ids = queue.send(logins('held', 5));
    const down = new MemorySink();
    down.fault = () => {
      throw new SinkError('Postgres refused the write: connect ECONNREFUSED 127.0.0.1:5432', {
        cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
      });
    };

    const err = await new Pipeline({ queue, sink: down, masker, log: silentLog }, { ...OPTIONS, unreachableTimeoutMs: 500, drainCheckIntervalMs: 50 })
      .run(AbortSignal.timeout(10_000))
      .then(
        () => assert.fail('the drain should fail'),
        (e: unknown) => e,
      );

    assert.ok(err instanceof UnavailableError, String(err));
    assert.match(err.message, /^Postgres could not be reached for \d+ s/);
    const released = queue.callsOf('changeVisibility').filter((c) => c.timeoutSeconds === 0);
    assert.deepEqual(released.flatMap((c) => c.messageIds).sort(), [...ids].sort());
    assert.deepEqual(await queue.depth(), { visible: 5, inFlight: 0, delayed: 0 });
  });

  it('run without --drain keeps retrying past the timeout and says why on /readyz', async () => {
    const queue = new FakeQueue();
    queue.send(logins('later', 3));
    let down = true;
    queue.faults.receive = () => {
      if (down) throw connectionRefused();
    };
    const health = new Health();
    const memory = new MemorySink();
    const stop = new AbortController();
    const pipeline = new Pipeline({ queue, sink: memory, masker, log: silentLog, health }, { ...OPTIONS, drain: false, unreachableTimeoutMs: 100, waitTimeSeconds: 1 });
    const run = pipeline.run(stop.signal);

    await sleep(600);
    assert.equal(health.ready, false);
    assert.match(health.snapshot().errors.sqs ?? '', /^transient: SQS ReceiveMessage failed: connect ECONNREFUSED/);
    down = false;
    await until(() => memory.rows.length === 3, 'the messages are written once SQS is back');
    assert.equal(health.ready, true);
    stop.abort();
    const stats = await run;
    assert.equal(stats.written, 3);
  });

  it('a wall clock stepped back and forth by an hour holds nothing: a trickle is committed within the flush interval', async (t) => {
    const queue = new FakeQueue();
    const memory = new MemorySink();
    const { sink, commits } = timed(memory);
    const realNow = Date.now.bind(Date);
    let stepMs = 0;
    t.mock.method(Date, 'now', () => realNow() + stepMs);
    const stop = new AbortController();
    const pipeline = new Pipeline(
      { queue, sink, masker, log: silentLog },
      { ...OPTIONS, drain: false, waitTimeSeconds: 1, flushIntervalMs: 200, maxBatchMessages: 500 },
    );
    const run = pipeline.run(stop.signal);
    try {
      const sentAt: number[] = [];
      for (const [i, step] of [-3_600_000, 3_600_000, 0, -3_600_000, -7_200_000, 3_600_000].entries()) {
        sentAt.push(performance.now());
        queue.send(logins(`trickle-${i}`, 1));
        // Received within a few ms by the long poll; the wall clock steps while it waits to be flushed.
        await sleep(20);
        stepMs = step;
        await until(() => commits.length === i + 1, `message ${i} is committed`, 3_000);
      }
      const latencies = commits.map((at, i) => Math.round(at - (sentAt[i] ?? 0)));
      assert.ok(
        latencies.every((ms) => ms < 1_000),
        `each message committed within the flush interval of 200 ms, not after the step; latencies ${latencies.join(', ')} ms`,
      );
    } finally {
      stop.abort();
      await run;
    }
  });
});
