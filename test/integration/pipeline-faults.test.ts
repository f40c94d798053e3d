/**
 * Faults on the SQS side that the emulator cannot produce, driven through the real pipeline and
 * the real PgSink on an embedded Postgres: an in-memory queue (test/helpers/fake-queue.ts)
 * stands in for SQS behind the `Queue` and `DeadLetterQueue` interfaces, nothing else is faked.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { SinkError, SourceError } from '../../src/errors.js';
import type { Logger } from '../../src/observability/logger.js';
import { MAX_VISIBILITY_SECONDS, Pipeline, type PipelineDeps, type PipelineOptions } from '../../src/pipeline.js';
import type { Sink } from '../../src/sink/postgres.js';
import type { WriteResult } from '../../src/sink/write-batch.js';
import { HmacMasker } from '../../src/transform/mask.js';
import type { Outcome } from '../../src/transform/transform.js';
import { drainPipeline, sinkWith } from '../helpers/drain.js';
import { FakeDeadLetterQueue, FakeQueue, type FakeCall } from '../helpers/fake-queue.js';
import { loginBody, silentLog } from '../helpers/fixtures.js';
import { query, testKey, useServers } from '../helpers/servers.js';

const servers = useServers();

/** A fresh, migrated database with the real sink over it, for test `t`. */
const database = (t: TestContext) => servers.migratedDatabase(t, { max: 4 });

const OPTIONS: PipelineOptions = {
  receiveConcurrency: 1,
  waitTimeSeconds: 1,
  drain: true,
  drainCheckIntervalMs: 50,
  visibilityTimeoutSeconds: 30,
  retryBaseDelayMs: 10,
  retryMaxDelayMs: 100,
};

function pipeline(deps: Omit<PipelineDeps, 'masker' | 'log'> & { log?: Logger }, options: Partial<PipelineOptions> = {}): Pipeline {
  return new Pipeline({ masker: new HmacMasker(testKey()), log: silentLog, ...deps }, { ...OPTIONS, ...options });
}

/** Valid login bodies with user ids `<prefix>-0` ... */
function logins(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => loginBody({ user_id: `${prefix}-${i}` }));
}

/** Rows per user_id in user_logins. */
async function rowsPerUser(databaseUrl: string): Promise<Map<string, number>> {
  const rows = await query<{ user_id: string; n: number }>(databaseUrl, 'SELECT user_id, count(*)::int AS n FROM user_logins GROUP BY user_id');
  return new Map(rows.map((r) => [r.user_id, r.n]));
}

async function assertEachWrittenOnce(databaseUrl: string, prefix: string, count: number): Promise<void> {
  const expected = new Map(Array.from({ length: count }, (_, i) => [`${prefix}-${i}`, 1]));
  assert.deepEqual(await rowsPerUser(databaseUrl), expected);
  const [ledger] = await query<{ n: number }>(databaseUrl, `SELECT count(*)::int AS n FROM login_etl.processed_messages WHERE outcome = 'written'`);
  assert.equal(ledger?.n, count);
}

/** The real sink behind a gate: writes wait until `open()`. */
function gated(real: Sink): { sink: Sink; open: () => void; waiting: () => number } {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let waiting = 0;
  return {
    sink: sinkWith(async (outcomes: readonly Outcome[]): Promise<WriteResult> => {
      waiting += 1;
      await gate;
      waiting -= 1;
      return await real.write(outcomes);
    }, real),
    open,
    waiting: () => waiting,
  };
}

/** Polls `condition` every 10 ms until it holds; fails the test after `timeoutMs`. */
async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await sleep(10);
  }
}

const throttled = () =>
  new SourceError('SQS ReceiveMessage failed: Rate exceeded', {
    cause: Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' }),
    status: 400,
    type: 'ThrottlingException',
  });

describe('pipeline faults behind a fake queue, real Postgres', () => {
  test('a throttled receive backs off and tries again; every message is written exactly once', { timeout: 30_000 }, async (t) => {
    const { databaseUrl, sink } = await database(t);
    const queue = new FakeQueue();
    queue.send(logins('throttled', 25));
    const failedAt: number[] = [];
    queue.faults.receive = (call) => {
      if (call <= 3) {
        failedAt.push(performance.now());
        throw throttled();
      }
    };
    // Full jitter draws Math.random(); pinned at its top, the delays are the caps: 20, 40, 80 ms.
    t.mock.method(Math, 'random', () => 0.999_999);

    const stats = await drainPipeline(pipeline({ queue, sink }, { retryBaseDelayMs: 20, retryMaxDelayMs: 1_000 }));

    assert.ok(queue.receiveAttempts > 3, `receive was called ${queue.receiveAttempts} times`);
    const firstSuccess = queue.callsOf('receive')[0];
    assert.ok(firstSuccess !== undefined && failedAt.length === 3);
    const [a = 0, b = 0, c = 0] = failedAt;
    const gaps = [b - a, c - b, firstSuccess.atMs - c].map(Math.round);
    assert.ok(gaps[0]! >= 18 && gaps[1]! >= 38 && gaps[2]! >= 78, `gaps between receives ${gaps.join(', ')} ms: expected backoff of 20, 40, 80 ms`);
    assert.deepEqual([stats.received, stats.written, stats.duplicates, stats.released], [25, 25, 0, 0]);
    await assertEachWrittenOnce(databaseUrl, 'throttled', 25);
    assert.deepEqual(queue.remaining(), []);
    assert.ok([...queue.receiveCounts().values()].every((n) => n === 1), 'no message was delivered twice');
  });

  test('deletes refused (invalid receipt handle) or failing: counted, redelivered, skipped by the ledger, one row each', { timeout: 30_000 }, async (t) => {
    const { databaseUrl, sink } = await database(t);
    const queue = new FakeQueue();
    queue.send(logins('undeleted', 10));
    queue.faults.delete = (call, messages) => {
      const ids = messages.map((m) => m.messageId);
      if (call === 1) {
        // ReceiptHandleIsInvalid for every entry: the messages stay, and come back.
        queue.makeVisible(ids);
        return ids;
      }
      if (call === 2) {
        queue.makeVisible(ids);
        throw new SourceError('SQS DeleteMessageBatch failed: Access to the resource is denied', { cause: new Error('AccessDenied'), status: 403, type: 'AccessDenied' });
      }
      return undefined;
    };

    const stats = await drainPipeline(pipeline({ queue, sink }));

    assert.equal(queue.callsOf('delete').length, 3, 'a delete failure that is not transient is not retried');
    assert.equal(stats.deleteFailures, 20);
    assert.equal(stats.received, 30, 'each message came back twice');
    assert.deepEqual([stats.written, stats.duplicates, stats.batches], [10, 20, 3]);
    assert.deepEqual(new Set(queue.receiveCounts().values()), new Set([3]));
    await assertEachWrittenOnce(databaseUrl, 'undeleted', 10);
    assert.deepEqual(queue.remaining(), []);
  });

  test('a write slower than the visibility timeout: the heartbeat keeps the batch invisible, then stops at the commit', { timeout: 30_000 }, async (t) => {
    const { databaseUrl, sink: real } = await database(t);
    const queue = new FakeQueue({ visibilityTimeoutSeconds: 1 });
    const ids = queue.send(logins('slow', 5));
    let committedAtMs = Number.POSITIVE_INFINITY;
    const slow: Sink = sinkWith(async (outcomes) => {
      await sleep(2_500);
      const result = await real.write(outcomes);
      committedAtMs = performance.now();
      return result;
    }, real);

    // A second receive loop polls all the while: a lapse in the heartbeat would hand it the batch again.
    const stats = await drainPipeline(pipeline({ queue, sink: slow }, { visibilityTimeoutSeconds: 1, receiveConcurrency: 2 }));

    const [received] = queue.callsOf('receive').filter((c) => c.messageIds.length > 0);
    assert.ok(received !== undefined);
    const beats = queue.callsOf('changeVisibility');
    assert.ok(beats.length >= 3, `${beats.length} heartbeats during a 2.5 s write with a 1 s timeout`);
    for (const beat of beats) {
      assert.equal(beat.timeoutSeconds, 1);
      assert.deepEqual([...beat.messageIds].sort(), [...ids].sort());
      assert.ok(beat.atMs < committedAtMs, 'no visibility change after the commit');
    }
    const times = [received.atMs, ...beats.map((b) => b.atMs)];
    const gaps = times.slice(1).map((at, i) => Math.round(at - times[i]!));
    assert.ok(gaps.every((gap) => gap >= 450), `heartbeats at half the timeout (500 ms); gaps ${gaps.join(', ')} ms`);
    assert.equal(stats.visibilityExtensions, beats.length * 5);
    assert.equal(stats.received, 5);
    assert.deepEqual(new Set(queue.receiveCounts().values()), new Set([1]), 'no message delivered twice');
    await assertEachWrittenOnce(databaseUrl, 'slow', 5);
  });

  test('the heartbeat never asks for visibility past 12 hours from the receive, and stops there', { timeout: 30_000 }, async (t) => {
    const { databaseUrl, sink: real } = await database(t);
    const queue = new FakeQueue({ visibilityTimeoutSeconds: 2 });
    const ids = queue.send(logins('twelve-hours', 3));
    const { sink, open } = gated(real);
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });

    // The pipeline's monotonic clock jumps from the first beat on: after it the batch looks
    // received 43,198.5 s ago (1.5 s left), after the second 43,199.5 s ago (0.5 s left, less
    // than SQS's 1 s unit). The fake queue keeps real time.
    let offsetMs = 0;
    const clock = () => performance.now() + offsetMs;
    const beatClock: number[] = [];
    let receivedAt = 0;
    queue.faults.changeVisibility = (call) => {
      beatClock.push(clock());
      const [received] = queue.callsOf('receive').filter((c) => c.messageIds.length > 0);
      receivedAt = received?.atMs ?? 0;
      if (call === 1) offsetMs = receivedAt + 43_198_500 - performance.now();
      if (call === 2) offsetMs = receivedAt + 43_199_500 - performance.now();
      return undefined;
    };

    const run = drainPipeline(pipeline({ queue, sink, log, clock }, { visibilityTimeoutSeconds: 2 }), 25_000);
    await until(() => lines.some((l) => l.includes('reached the 12-hour visibility limit')), 'the heartbeat gives up at 12 hours');
    const extensionsAtLimit = queue.callsOf('changeVisibility').length;
    // Past the limit SQS may deliver the messages again; a later beat can only belong to such a
    // new receive, never to the batch that reached the limit.
    const beats = queue.callsOf('changeVisibility').slice(0, extensionsAtLimit);
    open();
    const stats = await run;

    assert.deepEqual(
      beats.map((b) => b.timeoutSeconds),
      [2, 1],
      'the full timeout while far from the limit, then only what is left of the 12 hours',
    );
    beats.forEach((beat, i) => {
      const remainingSeconds = MAX_VISIBILITY_SECONDS - ((beatClock[i] ?? 0) - receivedAt) / 1000;
      assert.ok((beat.timeoutSeconds ?? 0) <= remainingSeconds, `asked for ${beat.timeoutSeconds} s with ${remainingSeconds} s left`);
      assert.deepEqual([...beat.messageIds].sort(), [...ids].sort());
    });
    assert.ok(stats.visibilityExtensions >= 2 * 3);
    await assertEachWrittenOnce(databaseUrl, 'twelve-hours', 3);
  });

  describe('poison messages', () => {
    test('a message received more often than the limit is rejected as poison without being parsed', { timeout: 30_000 }, async (t) => {
      const { databaseUrl, sink } = await database(t);
      const queue = new FakeQueue();
      const [poison] = queue.send([loginBody({ user_id: 'poison' })], { receiveCount: 2 }); // the next receive is the 3rd
      queue.send([loginBody({ user_id: 'healthy' })]);

      const stats = await drainPipeline(pipeline({ queue, sink }, { maxReceiveCount: 2 }));

      assert.deepEqual([stats.poisoned, stats.rejected, stats.written], [1, 1, 1]);
      const rejected = await query<{ message_id: string; reason: string; body: string; receive_count: number }>(
        databaseUrl,
        'SELECT message_id, reason, r::text AS body, receive_count FROM login_etl.rejected_messages r',
      );
      assert.equal(rejected.length, 1);
      const [row] = rejected;
      assert.equal(row?.message_id, poison);
      assert.match(row?.reason ?? '', /^received 3 times without being committed \(limit 2\)/);
      assert.equal(row?.reason, 'received 3 times without being committed (limit 2)', 'this process saw no error for it');
      assert.equal(row?.receive_count, 3);
      assert.ok(!row?.body.includes('203.0.113.7') && !row?.body.includes('555-12-3456'), 'nothing raw in the rejected row: its body is sealed');
      // A valid event: had it been parsed it would be a row.
      assert.deepEqual(await rowsPerUser(databaseUrl), new Map([['healthy', 1]]));
      assert.deepEqual(queue.remaining(), []);
    });

    test('the poison reason carries the last error this process saw for the message', { timeout: 30_000 }, async (t) => {
      const { databaseUrl, sink: real } = await database(t);
      const queue = new FakeQueue({ visibilityTimeoutSeconds: 1 });
      const [id] = queue.send([loginBody({ user_id: 'keeps-failing' })]);
      // The heartbeat's extensions are refused (as for an expired receipt handle): the held
      // message becomes visible again, and the other receive loop gets it a second time.
      queue.faults.changeVisibility = (_call, messages, timeoutSeconds) => (timeoutSeconds > 0 ? messages.map((m) => m.messageId) : undefined);
      let rejectionCommitted = false;
      const busy: Sink = sinkWith(async (outcomes) => {
        if (!rejectionCommitted && outcomes.some((o) => o.kind === 'accepted')) {
          const cause = Object.assign(new Error('sorry, too many clients already'), { code: '53300' });
          throw new SinkError('Postgres refused the write: sorry, too many clients already (SQLSTATE 53300)', { cause });
        }
        const result = await real.write(outcomes);
        if (outcomes.some((o) => o.kind === 'rejected')) rejectionCommitted = true;
        return result;
      }, real);

      const stats = await drainPipeline(pipeline({ queue, sink: busy }, { maxReceiveCount: 1, receiveConcurrency: 2, visibilityTimeoutSeconds: 1 }));

      assert.deepEqual([stats.received, stats.poisoned, stats.rejected, stats.written, stats.duplicates, stats.released], [2, 1, 1, 0, 1, 0]);
      assert.ok(stats.writeFailures > 0);
      const [row] = await query<{ message_id: string; reason: string }>(databaseUrl, 'SELECT message_id, reason FROM login_etl.rejected_messages');
      assert.equal(row?.message_id, id);
      assert.equal(
        row?.reason,
        'received 2 times without being committed (limit 1); last error: Postgres refused the write: sorry, too many clients already (SQLSTATE 53300)',
      );
      assert.deepEqual(await rowsPerUser(databaseUrl), new Map());
      assert.deepEqual(queue.remaining(), []);
    });
  });

  describe('dead-letter queue', () => {
    const invalid = [
      JSON.stringify({ user_id: 'dlq-bad-version', ip: '198.51.100.23', device_id: '123-45-6789', app_version: 'not a version' }),
      'not json at all; ip=198.51.100.24 device 987-65-4321',
    ];

    /** 3 valid and 2 invalid messages, interleaved; returns the ids of the invalid ones. */
    function sendMixed(queue: FakeQueue): string[] {
      const valid = logins('dlq', 3);
      const ids = queue.send([valid[0]!, invalid[0]!, valid[1]!, invalid[1]!, valid[2]!]);
      return [ids[1]!, ids[3]!];
    }

    const indexOf = (calls: readonly FakeCall[], op: FakeCall['op']) => calls.findIndex((c) => c.op === op);

    /** Forwarding recorded per rejected message id. */
    async function forwarding(databaseUrl: string) {
      const rows = await query<{ message_id: string; forwarded: boolean; forward_error: string | null }>(
        databaseUrl,
        'SELECT message_id, forwarded_at IS NOT NULL AS forwarded, forward_error FROM login_etl.rejected_messages ORDER BY message_id',
      );
      return new Map(rows.map((r) => [r.message_id, { forwarded: r.forwarded, error: r.forward_error }]));
    }

    test('rejected messages are forwarded once, with their original bodies and reasons, after the commit and before the delete', { timeout: 30_000 }, async (t) => {
      const { databaseUrl, sink } = await database(t);
      const calls: FakeCall[] = [];
      const queue = new FakeQueue({ calls });
      const deadLetters = new FakeDeadLetterQueue(calls);
      const invalidIds = sendMixed(queue);
      const atForward: { rejected: number; ledger: number }[] = [];
      deadLetters.fault = async () => {
        const [row] = await query<{ rejected: number; ledger: number }>(
          databaseUrl,
          `SELECT (SELECT count(*) FROM login_etl.rejected_messages)::int AS rejected,
                  (SELECT count(*) FROM login_etl.processed_messages)::int AS ledger`,
        );
        atForward.push(row!);
      };

      const stats = await drainPipeline(pipeline({ queue, sink, deadLetters }));

      assert.deepEqual(atForward, [{ rejected: 2, ledger: 5 }], 'forwarded once, after the commit that recorded the rejections');
      assert.ok(indexOf(calls, 'forward') < indexOf(calls, 'delete'), `call order: ${calls.map((c) => c.op).join(', ')}`);
      assert.deepEqual(
        deadLetters.letters.map((l) => [l.messageId, l.body]),
        [
          [invalidIds[0], invalid[0]],
          [invalidIds[1], invalid[1]],
        ],
        'exactly the invalid messages, bodies untouched (raw ip included)',
      );
      const rejected = await query<{ message_id: string; reason: string; body: string }>(
        databaseUrl,
        'SELECT message_id, reason, r::text AS body FROM login_etl.rejected_messages r ORDER BY message_id',
      );
      const reasons = new Map(rejected.map((r) => [r.message_id, r.reason]));
      for (const letter of deadLetters.letters) assert.equal(letter.reason, reasons.get(letter.messageId));
      assert.match(deadLetters.letters[0]?.reason ?? '', /^app_version /);
      assert.equal(deadLetters.letters[1]?.reason, 'body is not valid JSON');
      assert.ok(rejected.every((r) => !r.body.includes('198.51.100.')), 'the kept copy is sealed; only the dead letter is raw');
      assert.deepEqual(
        await forwarding(databaseUrl),
        new Map(invalidIds.map((id) => [id, { forwarded: true, error: null }])),
        'the forwarding is recorded with each rejection',
      );
      assert.equal(stats.deadLettered, 2);
      assert.deepEqual([stats.written, stats.rejected], [3, 2]);
      await assertEachWrittenOnce(databaseUrl, 'dlq', 3);
      assert.deepEqual(queue.remaining(), []);
    });

    test('a redelivery of a committed, forwarded rejection is not forwarded again', { timeout: 30_000 }, async (t) => {
      const { databaseUrl, sink } = await database(t);
      const calls: FakeCall[] = [];
      const queue = new FakeQueue({ calls });
      const deadLetters = new FakeDeadLetterQueue(calls);
      const invalidIds = sendMixed(queue);
      // The first delete is refused (an expired receipt handle): all five come back.
      queue.faults.delete = (call, messages) => {
        if (call > 1) return undefined;
        const ids = messages.map((m) => m.messageId);
        queue.makeVisible(ids);
        return ids;
      };

      const stats = await drainPipeline(pipeline({ queue, sink, deadLetters }));

      assert.deepEqual([stats.received, stats.duplicates, stats.deadLettered], [10, 5, 2]);
      assert.equal(queue.callsOf('delete').length, 2, 'the batch was delivered twice');
      assert.deepEqual(
        calls.filter((c) => c.op === 'forward').map((c) => [...c.messageIds].sort()),
        [[...invalidIds].sort()],
        'one forward, for the first delivery only',
      );
      assert.equal(deadLetters.letters.length, 2);
      await assertEachWrittenOnce(databaseUrl, 'dlq', 3);
      assert.deepEqual(queue.remaining(), []);
    });

    test('a forward that fails transiently is retried while the batch is held; nothing is written twice or deleted before it succeeds', { timeout: 30_000 }, async (t) => {
      const { databaseUrl, sink: real } = await database(t);
      const calls: FakeCall[] = [];
      const queue = new FakeQueue({ calls });
      const deadLetters = new FakeDeadLetterQueue(calls);
      const invalidIds = sendMixed(queue);
      deadLetters.fault = (call) => {
        if (call === 1) {
          throw new SourceError('SQS SendMessageBatch (dead-letter queue) failed: Service Unavailable', { cause: new Error('ServiceUnavailable'), status: 503 });
        }
      };
      let writes = 0;
      const sink = sinkWith(async (outcomes) => {
        writes += 1;
        return await real.write(outcomes);
      }, real);

      const stats = await drainPipeline(pipeline({ queue, sink, deadLetters }));

      const forwards = calls.flatMap((c, i) => (c.op === 'forward' ? [i] : []));
      assert.equal(forwards.length, 2);
      assert.ok(calls.slice(0, forwards[1]).every((c) => c.op !== 'delete'), `call order: ${calls.map((c) => c.op).join(', ')}`);
      assert.equal(writes, 1, 'the retry only forwards: the rows were committed by the first attempt');
      assert.deepEqual(
        deadLetters.letters.map((l) => [l.messageId, l.body]),
        [
          [invalidIds[0], invalid[0]],
          [invalidIds[1], invalid[1]],
        ],
      );
      assert.deepEqual([stats.writeFailures, stats.released, stats.deadLettered, stats.received], [1, 0, 2, 5]);
      assert.deepEqual(new Set(queue.receiveCounts().values()), new Set([1]), 'retried in hand, not redelivered');
      const [counts] = await query<{ rejected: number }>(databaseUrl, 'SELECT count(*)::int AS rejected FROM login_etl.rejected_messages');
      assert.equal(counts?.rejected, 2);
      await assertEachWrittenOnce(databaseUrl, 'dlq', 3);
      assert.deepEqual(queue.remaining(), []);
    });

    test('forwarding is durable: rejections committed but not forwarded when the process stopped are forwarded by the next one, once', { timeout: 30_000 }, async (t) => {
      const { databaseUrl, sink } = await database(t);
      const calls: FakeCall[] = [];
      const queue = new FakeQueue({ calls });
      const denied = new FakeDeadLetterQueue();
      const invalidIds = sendMixed(queue);
      denied.fault = () => {
        throw new SourceError('SQS SendMessageBatch (dead-letter queue) failed: Access to the resource is denied', {
          cause: new Error('AccessDenied'),
          status: 403,
          type: 'AccessDenied',
        });
      };
      const stop = new AbortController();
      const first = pipeline({ queue, sink, deadLetters: denied }, { shutdownTimeoutMs: 300 });
      const stopped = first.run(stop.signal);
      await until(() => first.stats.writeFailures >= 2, 'the batch is held on the broken dead-letter queue');
      stop.abort();
      const firstStats = await stopped;
      assert.deepEqual([firstStats.written, firstStats.rejected, firstStats.deadLettered, firstStats.released], [3, 2, 0, 5]);
      assert.deepEqual(denied.letters, []);
      assert.deepEqual(queue.callsOf('delete'), [], 'nothing deleted while its rejections were not forwarded');

      const deadLetters = new FakeDeadLetterQueue();
      const stats = await drainPipeline(pipeline({ queue, sink, deadLetters }));

      assert.deepEqual([stats.received, stats.duplicates, stats.deadLettered], [5, 5, 2]);
      assert.deepEqual(deadLetters.letters.map((l) => l.messageId).sort(), [...invalidIds].sort());
      assert.deepEqual(deadLetters.letters.map((l) => l.body).sort(), [...invalid].sort());
      assert.deepEqual(await forwarding(databaseUrl), new Map(invalidIds.map((id) => [id, { forwarded: true, error: null }])));
      await assertEachWrittenOnce(databaseUrl, 'dlq', 3);
      assert.deepEqual(queue.remaining(), []);
    });

    test('a body the dead-letter queue refuses for good is recorded as such, logged without its body, and not tried again', { timeout: 30_000 }, async (t) => {
      const { databaseUrl, sink } = await database(t);
      const queue = new FakeQueue();
      const deadLetters = new FakeDeadLetterQueue();
      const invalidIds = sendMixed(queue);
      const refusedId = invalidIds[1] as string;
      deadLetters.fault = () => [refusedId];
      const lines: string[] = [];
      const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });

      const stats = await drainPipeline(pipeline({ queue, sink, deadLetters, log }));

      assert.equal(deadLetters.calls.length, 1, 'one forward, not a retry loop');
      assert.deepEqual(deadLetters.letters.map((l) => l.messageId), [invalidIds[0]]);
      assert.deepEqual([stats.deadLettered, stats.unforwardable, stats.writeFailures, stats.released], [1, 1, 0, 0]);
      const recorded = await forwarding(databaseUrl);
      assert.deepEqual(recorded.get(invalidIds[0] as string), { forwarded: true, error: null });
      assert.equal(recorded.get(refusedId)?.forwarded, false);
      assert.match(recorded.get(refusedId)?.error ?? '', /^InvalidMessageContents/);
      const logged = lines.filter((l) => l.includes(refusedId) && l.includes('refuses'));
      assert.equal(logged.length, 1, lines.join(''));
      assert.ok(!lines.join('').includes('987-65-4321'), 'no body in the log');
      assert.deepEqual(queue.remaining(), []);
    });

    test('without a dead-letter queue nothing is forwarded and rejections are still kept', { timeout: 30_000 }, async (t) => {
      const { databaseUrl, sink } = await database(t);
      const calls: FakeCall[] = [];
      const queue = new FakeQueue({ calls });
      const invalidIds = sendMixed(queue);

      const stats = await drainPipeline(pipeline({ queue, sink }));

      assert.equal(stats.deadLettered, 0);
      assert.equal(indexOf(calls, 'forward'), -1);
      assert.deepEqual(await forwarding(databaseUrl), new Map(invalidIds.map((id) => [id, { forwarded: false, error: null }])));
      await assertEachWrittenOnce(databaseUrl, 'dlq', 3);
    });
  });

  test('a graceful stop while the sink keeps failing ends at the deadline and hands every held message back', { timeout: 30_000 }, async (t) => {
    const { databaseUrl } = await database(t);
    const queue = new FakeQueue();
    const ids = queue.send(logins('held', 15));
    const down: Sink = sinkWith(async () => {
      throw new SinkError('Postgres refused the write: read ECONNRESET', { cause: Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }) });
    });
    const stop = new AbortController();
    const p = pipeline({ queue, sink: down }, { receiveConcurrency: 2, shutdownTimeoutMs: 500, retryBaseDelayMs: 20, retryMaxDelayMs: 200 });
    const run = p.run(stop.signal);
    await until(() => queue.outstanding === 15 && p.stats.writeFailures >= 4, 'both batches are held and retrying');

    const stoppedAt = performance.now();
    stop.abort();
    const stats = await run;
    const elapsedMs = performance.now() - stoppedAt;

    assert.ok(elapsedMs >= 450, `batches were given the shutdown timeout (${Math.round(elapsedMs)} ms)`);
    assert.ok(elapsedMs < 2_000, `run() resolved ${Math.round(elapsedMs)} ms after the stop, with a 500 ms deadline`);
    assert.equal(stats.released, 15);
    const released = queue.callsOf('changeVisibility').filter((c) => c.timeoutSeconds === 0);
    assert.deepEqual(released.flatMap((c) => c.messageIds).sort(), [...ids].sort());
    assert.deepEqual(queue.callsOf('delete'), []);
    assert.equal(queue.outstanding, 0);
    assert.deepEqual(await queue.depth(), { visible: 15, inFlight: 0, delayed: 0 }, 'visible again at once');
    const [ledger] = await query<{ n: number }>(databaseUrl, 'SELECT count(*)::int AS n FROM login_etl.processed_messages');
    assert.equal(ledger?.n, 0);
  });

  // Known gap, not tested here because it fails: the pipeline checks the in-flight bound before a
  // receive but reserves nothing, so loops that find room at the same moment all receive. With
  // maxInFlightMessages 20, receiveConcurrency 4 and a blocked sink, 40 messages are held at once.
  // This test covers what does hold: a loop that finds the bound reached waits instead of polling.
  test('while the messages held reach the bound, the other receive loop does not poll; it resumes after the commit', { timeout: 30_000 }, async (t) => {
    const { databaseUrl, sink: real } = await database(t);
    const queue = new FakeQueue();
    queue.send(logins('bounded', 10));
    const { sink, open, waiting } = gated(real);
    const p = pipeline({ queue, sink }, { receiveConcurrency: 2, maxInFlightMessages: 10 });
    const run = drainPipeline(p, 25_000);
    // One loop holds all 10; the other finds no room for a receive of 10 and does not poll.
    await until(() => waiting() === 1, 'one batch is held');

    const attempts = queue.receiveAttempts;
    queue.send(logins('bounded', 40).slice(10));
    await sleep(1_500);

    assert.equal(queue.receiveAttempts, attempts, 'no receive while the bound is reached');
    assert.equal(queue.outstanding, 10);
    assert.equal(queue.maxOutstanding, 10);
    assert.equal(p.inFlight.messages, 10);
    assert.equal((await queue.depth()).visible, 30, 'the rest waits in the queue');

    open();
    const stats = await run;

    assert.equal(stats.received, 40);
    await assertEachWrittenOnce(databaseUrl, 'bounded', 40);
    assert.deepEqual(queue.remaining(), []);
  });
});
