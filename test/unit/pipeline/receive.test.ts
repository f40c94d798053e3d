/**
 * The read loop on the fake queue: the worst-case reservation under the in-flight bounds, and a
 * stop that leaves the receive under way to answer.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SourceError } from '../../../src/errors.js';
import { DependencyState } from '../../../src/failure.js';
import { InFlight } from '../../../src/in-flight.js';
import { receiveLoop, receiveWorstCase, SQS_MAX_MESSAGE_BYTES, type ReceiveLoopOptions } from '../../../src/pipeline/receive.js';
import type { QueueMessage } from '../../../src/source/queue.js';
import { FakeQueue } from '../../helpers/fake-queue.js';
import { loginBody, silentLog } from '../../helpers/fixtures.js';

const OPTIONS: ReceiveLoopOptions = { waitTimeSeconds: 1, drain: false, visibilityTimeoutSeconds: undefined, drainPollIntervalMs: 10, retryBaseDelayMs: 10, retryMaxDelayMs: 20 };
const MiB = 1_048_576;

function setUp(inFlight = new InFlight(1_000, 64 * MiB)) {
  const queue = new FakeQueue();
  const accepted: QueueMessage[][] = [];
  const answers: boolean[] = [];
  const sqs = new DependencyState('sqs', { log: silentLog, clock: () => performance.now() });
  const deps = {
    queue,
    inFlight,
    sqs,
    // Held for a moment, as a writer would hold them, then let go.
    accept: (messages: QueueMessage[]) => {
      accepted.push(messages);
      const bytes = messages.reduce((sum, m) => sum + Buffer.byteLength(m.body), 0);
      inFlight.add(messages.length, bytes);
      setTimeout(() => inFlight.remove(messages.length, bytes), 5);
    },
    onEmpty: () => undefined,
    onAnswer: (full: boolean) => answers.push(full),
  };
  return { queue, accepted, answers, sqs, deps, inFlight };
}

describe('receiveWorstCase', () => {
  it('is 10 messages of 1 MiB, fewer when the byte bound cannot hold 10, and never none', () => {
    assert.equal(SQS_MAX_MESSAGE_BYTES, 1_048_576);
    assert.deepEqual(receiveWorstCase(64 * MiB), { messages: 10, bytes: 10 * MiB });
    assert.deepEqual(receiveWorstCase(10 * MiB), { messages: 10, bytes: 10 * MiB });
    assert.deepEqual(receiveWorstCase(4 * MiB + 5), { messages: 4, bytes: 4 * MiB });
    assert.deepEqual(receiveWorstCase(MiB), { messages: 1, bytes: MiB });
  });
});

describe('receiveLoop', () => {
  it('asks for no more messages than the worst case the bounds hold, and waits for room before receiving', async () => {
    const { queue, accepted, deps, inFlight } = setUp(new InFlight(1_000, 3 * MiB));
    queue.send(Array.from({ length: 5 }, (_, i) => loginBody({ user_id: `u-${i}` })));
    const seen: number[] = [];
    const receive = queue.receive.bind(queue);
    queue.receive = async (options) => {
      seen.push(options.maxMessages);
      return await receive(options);
    };
    inFlight.add(1, 1); // 1 byte held: 1 + 3 MiB does not fit
    const stop = new AbortController();
    const loop = receiveLoop(deps, OPTIONS, { stop: stop.signal, cut: new AbortController().signal });
    await sleep(50);
    assert.equal(queue.receiveAttempts, 0, 'no receive while its worst case does not fit');

    inFlight.remove(1, 1);
    while (accepted.flat().length < 5) await sleep(5);
    stop.abort();
    await loop;

    assert.ok(seen.every((n) => n === 3), `maxMessages asked for: ${seen.join(', ')}`);
    assert.deepEqual(inFlight.reserved, { messages: 0, bytes: 0 }, 'every reservation given back');
  });

  it('tells whether each receive brought all it asked for', async () => {
    const { queue, accepted, answers, deps } = setUp();
    queue.send(Array.from({ length: 13 }, (_, i) => loginBody({ user_id: `u-${i}` })));
    const stop = new AbortController();
    // A drain: short polls, and a pause after an empty one.
    const loop = receiveLoop(deps, { ...OPTIONS, drain: true }, { stop: stop.signal, cut: new AbortController().signal });
    while (answers.length < 3) await sleep(5);
    stop.abort();
    await loop;
    assert.deepEqual(accepted.map((m) => m.length), [10, 3]);
    assert.deepEqual(answers.slice(0, 3), [true, false, false], '10 of 10, then 3 of 10, then none');
  });

  it('a stop issues no new receive but lets the one under way answer, and what it brings is accepted', async () => {
    const { queue, accepted, deps } = setUp();
    const stop = new AbortController();
    const loop = receiveLoop(deps, { ...OPTIONS, waitTimeSeconds: 2 }, { stop: stop.signal, cut: new AbortController().signal });
    await sleep(50);
    stop.abort();
    const [id] = queue.send([loginBody()]);
    await loop;

    assert.deepEqual(accepted.flat().map((m) => m.messageId), [id], 'the open receive was answered and its message kept');
    assert.equal(queue.receiveAttempts, 1);
  });

  it('a cut ends the receive under way at once', async () => {
    const { queue, deps } = setUp();
    const stop = new AbortController();
    const cut = new AbortController();
    const loop = receiveLoop(deps, { ...OPTIONS, waitTimeSeconds: 20 }, { stop: stop.signal, cut: cut.signal });
    await sleep(50);
    const started = performance.now();
    stop.abort();
    cut.abort();
    await loop;
    assert.ok(performance.now() - started < 200, 'the 20 s poll was cut');
    assert.equal(queue.receiveAttempts, 1);
  });

  it('a failing receive backs off, marks SQS failing, and gives its reservation back', async () => {
    const { queue, deps, sqs, inFlight } = setUp();
    queue.faults.receive = () => {
      throw new SourceError('SQS ReceiveMessage failed: HTTP 503', { cause: undefined, status: 503 });
    };
    const stop = new AbortController();
    const loop = receiveLoop(deps, OPTIONS, { stop: stop.signal, cut: new AbortController().signal });
    await sleep(150);
    assert.equal(sqs.failure?.kind, 'transient');
    assert.ok(queue.receiveAttempts >= 3 && queue.receiveAttempts < 40, `${queue.receiveAttempts} attempts in 150 ms with 10-20 ms backoff`);
    stop.abort();
    await loop;
    assert.deepEqual(inFlight.reserved, { messages: 0, bytes: 0 });
  });
});
