import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { backoffMs } from '../../src/failure.js';

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
