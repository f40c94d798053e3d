/**
 * InFlight: the bound on messages and bytes held and reserved at once, and the wait for room under it.
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
  it('resolves at once while count + upcoming and bytes + upcoming bytes fit', async () => {
    const inFlight = new InFlight(20, 1_000);
    const empty = watch(inFlight.waitForRoom(10, 1_000, never()));
    inFlight.add(10, 999);
    const exactlyFull = watch(inFlight.waitForRoom(10, 1, never())); // 10 + 10 = 20, 999 + 1 = 1,000: still fits

    await settle();

    assert.equal(empty.settled, true);
    assert.equal(exactlyFull.settled, true);
    assert.deepEqual([inFlight.messages, inFlight.bytes], [10, 999]);
  });

  it('waits while count + upcoming would pass the limit, and resolves after remove() makes room', async () => {
    const inFlight = new InFlight(20, 1_000_000);
    inFlight.add(11, 100);
    const waiting = watch(inFlight.waitForRoom(10, 0, never())); // 11 + 10 = 21 > 20

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
    const waiting = watch(inFlight.waitForRoom(10, 0, never()));

    inFlight.remove(5, 0); // 15 + 10 > 20
    await settle();
    assert.equal(waiting.settled, false);

    inFlight.remove(5, 0); // 10 + 10 = 20
    await settle();
    assert.equal(waiting.settled, true);
  });

  it('waits while bytes held + upcoming bytes would pass the byte limit, whatever the count', async () => {
    const inFlight = new InFlight(1_000, 1_000);
    inFlight.add(1, 900);
    const waiting = watch(inFlight.waitForRoom(1, 101, never())); // 900 + 101 > 1,000

    await settle();
    assert.equal(waiting.settled, false, 'bytes over the limit must wait even with room for messages');

    inFlight.remove(0, 1); // 899 + 101 = 1,000
    await settle();
    assert.equal(waiting.settled, true);
  });

  it('resolves at once when the signal aborts, without room', async () => {
    const inFlight = new InFlight(10, 1_000);
    inFlight.add(10, 0);
    const controller = new AbortController();
    const waiting = watch(inFlight.waitForRoom(10, 0, controller.signal));
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
    const waiting = watch(inFlight.waitForRoom(10, 0, AbortSignal.abort()));
    await settle();
    assert.equal(waiting.settled, true);
  });

  it('wakes every waiter on one remove(), each checking the bound again', async () => {
    const inFlight = new InFlight(30, 1_000_000);
    inFlight.add(30, 300);
    const waiters = Array.from({ length: 4 }, () => watch(inFlight.waitForRoom(10, 0, never())));
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

/** Watches an acquire, recording what it resolved with once it settles. */
function watchAcquire(promise: Promise<boolean>): { readonly result: boolean | undefined } {
  const state: { result: boolean | undefined } = { result: undefined };
  void promise.then((taken) => {
    state.result = taken;
  });
  return state;
}

describe('InFlight.acquire and release', () => {
  it('takes room at once when it fits, and the room taken counts against the bound for the next one', async () => {
    const inFlight = new InFlight(20, 1_000_000);
    const first = watchAcquire(inFlight.acquire(10, 0, never()));
    const second = watchAcquire(inFlight.acquire(10, 0, never()));
    const third = watchAcquire(inFlight.acquire(10, 0, never())); // 10 + 10 reserved: no room for 10 more

    await settle();

    assert.deepEqual([first.result, second.result, third.result], [true, true, undefined]);
    assert.deepEqual([inFlight.messages, inFlight.bytes], [0, 0], 'room reserved is not messages held');
  });

  it('loops waiting together cannot all pass the check before any of them counts', async () => {
    const inFlight = new InFlight(20, 1_000_000);
    inFlight.add(10, 0);
    const acquires = Array.from({ length: 4 }, () => watchAcquire(inFlight.acquire(10, 0, never())));
    await settle();
    assert.deepEqual(
      acquires.map((a) => a.result),
      [true, undefined, undefined, undefined],
    );

    inFlight.remove(10, 0); // room for one more receive of 10, not three
    await settle();

    assert.equal(acquires.filter((a) => a.result === true).length, 2);
  });

  it('release gives back room a receive did not fill and wakes a waiting acquire', async () => {
    const inFlight = new InFlight(20, 1_000_000);
    assert.equal(await inFlight.acquire(10, 0, never()), true);
    assert.equal(await inFlight.acquire(10, 0, never()), true);
    const waiting = watchAcquire(inFlight.acquire(10, 0, never()));
    await settle();
    assert.equal(waiting.result, undefined);

    // One receive brought 3 messages: they are held, and its reservation is given back.
    inFlight.add(3, 300);
    inFlight.release(10, 0);
    await settle();
    assert.equal(waiting.result, undefined, '10 reserved + 3 held + 10 more > 20');

    // The other receive came back empty.
    inFlight.release(10, 0);
    await settle();
    assert.equal(waiting.result, true);
    assert.deepEqual([inFlight.messages, inFlight.bytes], [3, 300]);
  });

  it('resolves false, taking nothing, when the signal aborts first or already has', async () => {
    const inFlight = new InFlight(10, 1_000_000);
    assert.equal(await inFlight.acquire(10, 0, never()), true);
    const stop = new AbortController();
    const waiting = watchAcquire(inFlight.acquire(10, 0, stop.signal));
    await settle();
    assert.equal(waiting.result, undefined);

    stop.abort();
    await settle();
    assert.equal(waiting.result, false);
    assert.equal(await inFlight.acquire(1, 0, stop.signal), false);

    // Nothing was taken by the aborted ones: releasing the first reservation leaves room for a full receive.
    inFlight.release(10, 0);
    assert.equal(await inFlight.acquire(10, 0, never()), true);
  });

  it('waits on the byte bound as well as the count', async () => {
    const inFlight = new InFlight(100, 1_000);
    inFlight.add(1, 1);
    const waiting = watchAcquire(inFlight.acquire(10, 1_000, never()));
    await settle();
    assert.equal(waiting.result, undefined);

    inFlight.remove(1, 1);
    await settle();
    assert.equal(waiting.result, true);
  });

  it("reserves a receive's worst-case bytes: two receives of 600 cannot both be under way under a bound of 1,000", async () => {
    const inFlight = new InFlight(100, 1_000);
    const first = watchAcquire(inFlight.acquire(10, 600, never()));
    const second = watchAcquire(inFlight.acquire(10, 600, never()));
    await settle();
    assert.deepEqual([first.result, second.result], [true, undefined]);
    assert.deepEqual(inFlight.reserved, { messages: 10, bytes: 600 });

    // The first receive brought 2 messages of 250 bytes: they are held, its reservation given back.
    inFlight.add(2, 500);
    inFlight.release(10, 600);
    await settle();
    assert.equal(second.result, undefined, '500 held + 600 more > 1,000 bytes');
    assert.deepEqual(inFlight.reserved, { messages: 0, bytes: 0 });

    inFlight.remove(2, 500);
    await settle();
    assert.equal(second.result, true);
    assert.deepEqual(inFlight.reserved, { messages: 10, bytes: 600 });
    assert.deepEqual([inFlight.messages, inFlight.bytes], [0, 0]);
  });
});
