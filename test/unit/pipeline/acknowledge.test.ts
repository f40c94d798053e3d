/**
 * The acknowledger on the fake queue: deletes retried only while it can help, hand-backs, and
 * both cut short by their signal when the queue never answers.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SourceError } from '../../../src/errors.js';
import { Acknowledger } from '../../../src/pipeline/acknowledge.js';
import { FakeQueue } from '../../helpers/fake-queue.js';
import { loginBody, silentLog } from '../../helpers/fixtures.js';

const RETRY = { retryBaseDelayMs: 5, retryMaxDelayMs: 10 };
const never = () => new AbortController().signal;

async function received(queue: FakeQueue, count: number) {
  queue.send(Array.from({ length: count }, () => loginBody()));
  return await queue.receive({ maxMessages: 10, waitTimeSeconds: 0, signal: never() });
}

/**
 * A signal aborted after `ms` by a timer that keeps the process alive: AbortSignal.timeout's timer
 * does not, and with nothing else pending Node.js 22 would end the test before it fires.
 */
function abortAfter(ms: number): AbortSignal {
  const controller = new AbortController();
  setTimeout(() => controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')), ms);
  return controller.signal;
}

describe('Acknowledger', () => {
  it('deletes committed messages', async () => {
    const queue = new FakeQueue();
    const messages = await received(queue, 3);
    const tally = { deleteFailures: 0, released: 0 };
    await new Acknowledger({ queue, log: silentLog, tally }, RETRY).delete(messages, never());
    assert.deepEqual(queue.remaining(), []);
    assert.equal(tally.deleteFailures, 0);
  });

  it('tries a transient delete failure three times in all, then leaves the messages to the ledger', async () => {
    const queue = new FakeQueue();
    const messages = await received(queue, 2);
    queue.faults.delete = () => {
      throw new SourceError('SQS DeleteMessageBatch failed: HTTP 503', { cause: undefined, status: 503 });
    };
    const tally = { deleteFailures: 0, released: 0 };
    await new Acknowledger({ queue, log: silentLog, tally }, RETRY).delete(messages, never());
    assert.equal(queue.callsOf('delete').length, 3);
    assert.equal(tally.deleteFailures, 2);
  });

  it('a broken delete failure is not tried again', async () => {
    const queue = new FakeQueue();
    const messages = await received(queue, 1);
    queue.faults.delete = () => {
      throw new SourceError('SQS DeleteMessageBatch failed: AccessDenied', { cause: undefined, status: 403, type: 'AccessDenied' });
    };
    const tally = { deleteFailures: 0, released: 0 };
    await new Acknowledger({ queue, log: silentLog, tally }, RETRY).delete(messages, never());
    assert.equal(queue.callsOf('delete').length, 1);
  });

  it('a delete the queue never answers ends when its signal aborts', async () => {
    const queue = new FakeQueue();
    const messages = await received(queue, 2);
    queue.stalled.add('delete');
    const tally = { deleteFailures: 0, released: 0 };
    const started = performance.now();
    await new Acknowledger({ queue, log: silentLog, tally }, RETRY).delete(messages, abortAfter(100));
    const tookMs = performance.now() - started;
    assert.ok(tookMs >= 90 && tookMs < 1_000, `took ${Math.round(tookMs)} ms`);
    assert.equal(queue.callsOf('delete').length, 1, 'an aborted delete is not tried again');
    assert.equal(tally.deleteFailures, 2);
  });

  it('hands messages back visible at once, and gives up the hand-back when its signal aborts', async () => {
    const queue = new FakeQueue();
    const messages = await received(queue, 4);
    const tally = { deleteFailures: 0, released: 0 };
    const acknowledger = new Acknowledger({ queue, log: silentLog, tally }, RETRY);
    await acknowledger.release(messages.slice(0, 2), never());
    assert.deepEqual(await queue.depth(), { visible: 2, inFlight: 2, delayed: 0 });

    queue.stalled.add('changeVisibility');
    const started = performance.now();
    await acknowledger.release(messages.slice(2), abortAfter(100));
    assert.ok(performance.now() - started < 1_000);
    assert.equal(tally.released, 4);
    assert.deepEqual(await queue.depth(), { visible: 2, inFlight: 2, delayed: 0 }, 'the stalled hand-back changed nothing');
  });
});
