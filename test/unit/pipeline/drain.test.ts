/**
 * The drain watcher on the fake queue: it ends only when nothing is held, a receive came back
 * empty and the queue is empty; it gives up on a dependency failing too long.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SourceError } from '../../../src/errors.js';
import { classify, DependencyState } from '../../../src/failure.js';
import { DrainWatcher } from '../../../src/pipeline/drain.js';
import { FakeQueue } from '../../helpers/fake-queue.js';
import { loginBody, silentLog } from '../../helpers/fixtures.js';

const OPTIONS = { drainCheckIntervalMs: 1_000, drainPollIntervalMs: 0, unreachableTimeoutMs: 60_000 };

function setUp(queue: FakeQueue, held: () => number, clock = () => performance.now()) {
  const sqs = new DependencyState('sqs', { log: silentLog, clock });
  return { sqs, watcher: new DrainWatcher({ queue, log: silentLog, clock, states: [sqs], held }, OPTIONS) };
}

describe('DrainWatcher', () => {
  it('ends as soon as it is prompted with nothing held, an empty receive and an empty queue', async () => {
    const queue = new FakeQueue();
    const { watcher } = setUp(queue, () => 0);
    const watching = watcher.watch(new AbortController().signal);
    const started = performance.now();
    watcher.emptyReceive();
    assert.deepEqual(await watching, { kind: 'drained' });
    assert.ok(performance.now() - started < 100, 'without waiting for the check interval');
  });

  it('does not end while a receive is held, the queue holds messages, or no receive came back empty', async () => {
    const queue = new FakeQueue();
    let held = 1;
    const { watcher } = setUp(queue, () => held);
    const stop = new AbortController();
    let ended = false;
    const watching = watcher.watch(stop.signal).then((end) => {
      ended = true;
      return end;
    });
    watcher.emptyReceive();
    await sleep(30);
    assert.equal(ended, false, 'a receive is held');

    held = 0;
    queue.send([loginBody()]);
    watcher.prompt();
    await sleep(30);
    assert.equal(ended, false, 'the queue holds a message');

    watcher.received();
    const [message] = await queue.receive({ maxMessages: 1, waitTimeSeconds: 0, signal: stop.signal });
    await queue.delete(message === undefined ? [] : [message]);
    watcher.prompt();
    await sleep(30);
    assert.equal(ended, false, 'no receive came back empty since the last one with messages');

    watcher.emptyReceive();
    assert.deepEqual(await watching, { kind: 'drained' });
  });

  it('gives up once a dependency has failed for the unreachable timeout, naming it', async () => {
    let now = 0;
    const queue = new FakeQueue();
    const { sqs, watcher } = setUp(queue, () => 0, () => now);
    const failure = classify(new SourceError('SQS ReceiveMessage failed: connect ECONNREFUSED', { cause: Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }) }), 'sqs');
    sqs.failed(failure, 'receive failed');
    const watching = watcher.watch(new AbortController().signal);
    now = 59_999;
    watcher.prompt();
    await sleep(10);
    now = 60_000;
    watcher.prompt();
    const end = await watching;
    assert.equal(end.kind, 'gave-up');
    assert.equal(end.kind === 'gave-up' ? end.failure.dependency : undefined, 'sqs');
  });

  it('ends when its signal aborts', async () => {
    const { watcher } = setUp(new FakeQueue(), () => 1);
    const stop = new AbortController();
    const watching = watcher.watch(stop.signal);
    stop.abort();
    assert.deepEqual(await watching, { kind: 'stopped' });
  });
});
