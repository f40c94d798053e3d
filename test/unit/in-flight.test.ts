/**
 * InFlight: the bound on messages and bytes held at once, and the wait for room under it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import { InFlight } from '../../src/in-flight.js';

/** Watches a promise so a test can ask whether it has settled yet, without racing a timer. */
function watch(promise: Promise<void>): { readonly settled: boolean; readonly done: Promise<void> } {
  const state = { settled: false, done: promise };
  void promise.then(() => {
    state.settled = true;
  });
  return state;
}

/** Lets every pending promise callback and I/O turn run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i += 1) await turn();
}

const never = () => new AbortController().signal;

describe('InFlight.waitForRoom', () => {
  it('resolves at once while count + upcoming fits and bytes are under the limit', async () => {
    const inFlight = new InFlight(20, 1_000);
    const empty = watch(inFlight.waitForRoom(10, never()));
    inFlight.add(10, 999);
    const exactlyFull = watch(inFlight.waitForRoom(10, never())); // 10 + 10 = 20: still fits

    await settle();

    assert.equal(empty.settled, true);
    assert.equal(exactlyFull.settled, true);
    assert.deepEqual([inFlight.messages, inFlight.bytes], [10, 999]);
  });

  it('waits while count + upcoming would pass the limit, and resolves after remove() makes room', async () => {
    const inFlight = new InFlight(20, 1_000_000);
    inFlight.add(11, 100);
    const waiting = watch(inFlight.waitForRoom(10, never())); // 11 + 10 = 21 > 20

    await settle();
    assert.equal(waiting.settled, false, 'one message over the limit must wait');

    inFlight.remove(1, 10);
    await settle();
    assert.equal(waiting.settled, true);
    assert.deepEqual([inFlight.messages, inFlight.bytes], [10, 90]);
  });

  it('keeps waiting when a remove() does not make enough room', async () => {
    const inFlight = new InFlight(20, 1_000_000);
    inFlight.add(10, 0);
    inFlight.add(10, 0);
    const waiting = watch(inFlight.waitForRoom(10, never()));

    inFlight.remove(5, 0); // 15 + 10 > 20
    await settle();
    assert.equal(waiting.settled, false);

    inFlight.remove(5, 0); // 10 + 10 = 20
    await settle();
    assert.equal(waiting.settled, true);
  });

  it('waits while the bytes held reach the byte limit, whatever the count', async () => {
    const inFlight = new InFlight(1_000, 1_000);
    inFlight.add(1, 1_000); // bytes >= maxBytes
    const waiting = watch(inFlight.waitForRoom(1, never()));

    await settle();
    assert.equal(waiting.settled, false, 'bytes at the limit must wait even with room for messages');

    inFlight.remove(0, 1); // 999 < 1,000
    await settle();
    assert.equal(waiting.settled, true);
  });

  it('resolves at once when the signal aborts, without room', async () => {
    const inFlight = new InFlight(10, 1_000);
    inFlight.add(10, 0);
    const controller = new AbortController();
    const waiting = watch(inFlight.waitForRoom(10, controller.signal));
    await settle();
    assert.equal(waiting.settled, false);

    controller.abort();
    await settle();

    assert.equal(waiting.settled, true);
    assert.equal(inFlight.messages, 10, 'aborting frees nothing');
  });

  it('resolves at once for a signal that is already aborted', async () => {
    const inFlight = new InFlight(10, 1_000);
    inFlight.add(10, 5_000);
    const waiting = watch(inFlight.waitForRoom(10, AbortSignal.abort()));
    await settle();
    assert.equal(waiting.settled, true);
  });

  it('wakes every waiter on one remove(), each checking the bound again', async () => {
    const inFlight = new InFlight(30, 1_000_000);
    inFlight.add(30, 300);
    const waiters = Array.from({ length: 4 }, () => watch(inFlight.waitForRoom(10, never())));
    await settle();
    assert.deepEqual(
      waiters.map((w) => w.settled),
      [false, false, false, false],
    );

    inFlight.remove(30, 300);
    await settle();

    assert.deepEqual(
      waiters.map((w) => w.settled),
      [true, true, true, true],
    );
  });
});
