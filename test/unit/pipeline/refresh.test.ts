/**
 * The refresher on the fake queue and a clock the test moves: extensions at half the timeout,
 * none past SQS's 12 hours, none after untrack.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import type { Held } from '../../../src/pipeline/held.js';
import { MAX_VISIBILITY_SECONDS, VisibilityRefresher } from '../../../src/pipeline/refresh.js';
import { FakeQueue } from '../../helpers/fake-queue.js';
import { loginBody, silentLog } from '../../helpers/fixtures.js';

async function heldFrom(queue: FakeQueue, receivedAt: number): Promise<Held> {
  queue.send([loginBody(), loginBody()]);
  const messages = await queue.receive({ maxMessages: 10, waitTimeSeconds: 0, signal: new AbortController().signal });
  return { messages, outcomes: [], bytes: 0, receivedAt };
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i += 1) await turn();
}

describe('VisibilityRefresher', () => {
  it('extends a held receive by the timeout at half of it, and not at all once untracked', async () => {
    let now = 0;
    const queue = new FakeQueue();
    const tally = { visibilityExtensions: 0 };
    const refresher = new VisibilityRefresher({ queue, log: silentLog, clock: () => now, tally }, 30, new AbortController().signal);
    const held = await heldFrom(queue, now);
    refresher.track(held);

    now = 14_999;
    refresher.tick();
    await settle();
    assert.equal(queue.callsOf('changeVisibility').length, 0, 'not before half the timeout');

    now = 15_000;
    refresher.tick();
    refresher.tick(); // one extension at a time
    await settle();
    assert.deepEqual(queue.callsOf('changeVisibility').map((c) => c.timeoutSeconds), [30]);
    assert.equal(tally.visibilityExtensions, 2);

    await refresher.untrack([held]);
    now = 60_000;
    refresher.tick();
    await settle();
    assert.equal(queue.callsOf('changeVisibility').length, 1);
    assert.equal(refresher.size, 0);
  });

  it('never extends past 12 hours from the receive', async () => {
    let now = 0;
    const queue = new FakeQueue();
    const refresher = new VisibilityRefresher({ queue, log: silentLog, clock: () => now, tally: { visibilityExtensions: 0 } }, 30, new AbortController().signal);
    refresher.track(await heldFrom(queue, 0));

    now = (MAX_VISIBILITY_SECONDS - 10) * 1000;
    refresher.tick();
    await settle();
    assert.deepEqual(queue.callsOf('changeVisibility').map((c) => c.timeoutSeconds), [10], 'up to the limit, not past it');

    now = (MAX_VISIBILITY_SECONDS + 5) * 1000; // the next extension is due, past the limit
    refresher.tick();
    await settle();
    assert.equal(queue.callsOf('changeVisibility').length, 1, 'nothing past the limit');
    assert.equal(refresher.size, 0);
  });

  it('untrack waits for an extension under way, which its signal can abort', async () => {
    const queue = new FakeQueue();
    queue.stalled.add('changeVisibility');
    const hardStop = new AbortController();
    const refresher = new VisibilityRefresher({ queue, log: silentLog, clock: () => 20_000, tally: { visibilityExtensions: 0 } }, 30, hardStop.signal);
    const held = await heldFrom(queue, 0);
    refresher.track(held);
    refresher.tick();
    let untracked = false;
    const untrack = refresher.untrack([held]).then(() => {
      untracked = true;
    });
    await settle();
    assert.equal(untracked, false, 'the extension under way is waited for');
    hardStop.abort();
    await untrack;
  });
});
