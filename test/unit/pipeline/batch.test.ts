/**
 * The batcher: receives gathered into transactions up to a size, waiting a flush interval
 * measured on the clock it is given.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Batcher } from '../../../src/pipeline/batch.js';
import type { Held } from '../../../src/pipeline/held.js';
import { queueMessage } from '../../helpers/fixtures.js';

function held(count: number, receivedAt: number): Held {
  const messages = Array.from({ length: count }, () => queueMessage('{}'));
  return { messages, outcomes: [], bytes: 2 * count, receivedAt };
}

describe('Batcher', () => {
  it('gathers whole receives up to maxBatchMessages, oldest first, never splitting a receive', async () => {
    const batcher = new Batcher({ maxBatchMessages: 20, flushIntervalMs: 60_000 }, () => 0);
    const receives = [held(10, 0), held(8, 0), held(5, 0), held(10, 0)];
    for (const r of receives) batcher.push(r);

    assert.deepEqual(await batcher.next(), receives.slice(0, 2), '10 + 8 fit; 5 more would pass 20');
    batcher.end();
    assert.deepEqual(await batcher.next(), receives.slice(2, 4));
    assert.equal(await batcher.next(), undefined, 'ended and empty');
  });

  it('waits for company until the oldest receive has waited the flush interval, on its own clock', async () => {
    let offsetMs = 0;
    const clock = () => performance.now() + offsetMs;
    const batcher = new Batcher({ maxBatchMessages: 500, flushIntervalMs: 40 }, clock);
    const first = held(1, clock());
    batcher.push(first);
    const started = performance.now();
    const group = await batcher.next();
    const waitedMs = performance.now() - started;
    assert.deepEqual(group, [first]);
    assert.ok(waitedMs >= 35 && waitedMs < 1_000, `waited ${Math.round(waitedMs)} ms`);

    // A receive whose flush interval has passed on the batcher's clock goes out at once.
    const late = held(1, clock());
    offsetMs += 40;
    batcher.push(late);
    const again = performance.now();
    assert.deepEqual(await batcher.next(), [late]);
    assert.ok(performance.now() - again < 20);
  });

  it('a receive that came back short lets what is pending out at once; a full one makes it wait for company again', async (t) => {
    const batcher = new Batcher({ maxBatchMessages: 500, flushIntervalMs: 60_000 }, () => 0);
    // Ends the minute-long waits of a failed run, so the file ends with the test.
    t.after(() => batcher.end());
    const stillWaiting = (group: Promise<Held[] | undefined>) =>
      Promise.race([group, new Promise<'still waiting'>((resolve) => setTimeout(() => resolve('still waiting'), 200))]);

    const first = held(10, 0);
    batcher.push(first);
    batcher.answered(true);
    const waiting = batcher.next();
    assert.equal(await stillWaiting(waiting), 'still waiting', 'a full receive: more may come, so the batch waits');
    batcher.answered(false);
    assert.deepEqual(await stillWaiting(waiting), [first], 'a short receive wakes the writer waiting for company');

    const second = held(3, 0);
    batcher.push(second);
    assert.deepEqual(await stillWaiting(batcher.next()), [second], 'still quiet: the next receive goes out at once');

    batcher.answered(true);
    const third = held(10, 0);
    batcher.push(third);
    const waitingAgain = batcher.next();
    assert.equal(await stillWaiting(waitingAgain), 'still waiting', 'a full receive again: back to waiting');
    batcher.end();
    assert.deepEqual(await waitingAgain, [third]);
  });

  it('end() lets what is pending out without waiting and wakes a writer that waits for work', async () => {
    const batcher = new Batcher({ maxBatchMessages: 500, flushIntervalMs: 60_000 }, () => 0);
    const waiting = batcher.next();
    const only = held(3, 0);
    batcher.push(only);
    batcher.end();
    assert.deepEqual(await waiting, [only]);
    assert.equal(await batcher.next(), undefined);
  });
});
