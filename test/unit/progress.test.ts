import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { PipelineStats } from '../../src/pipeline.js';
import { TerminalProgress } from '../../src/observability/progress.js';

const stats = (over: Partial<PipelineStats>): PipelineStats => ({
  received: 0, written: 0, rejected: 0, duplicates: 0, batches: 0, writeFailures: 0, deleteFailures: 0,
  released: 0, visibilityExtensions: 0, poisoned: 0, deadLettered: 0, unforwardable: 0, unconfirmed: 0, ...over,
});

describe('TerminalProgress', () => {
  test('shows processed, rate, messages left from the last depth, and rejections; redraws in place', () => {
    let now = 0;
    const written: string[] = [];
    const view = { stats: stats({}) };
    const progress = new TerminalProgress({ write: (t: string) => written.push(t), columns: 200 }, () => now);
    progress.depth({ visible: 900, inFlight: 100, delayed: 0 });
    progress.start(view);
    now = 2_000;
    view.stats = stats({ received: 400, written: 390, rejected: 10 });
    const line = progress.line();
    progress.stop();

    assert.match(line, /400 processed/);
    assert.match(line, /200\/s/);
    assert.match(line, /~600 left/);
    assert.match(line, /40%/);
    assert.match(line, /10 rejected/);
    assert.ok(written.every((t) => t.startsWith('\r\x1b[2K')));
  });

  test('ends with a summary table, and writes nothing before it starts', () => {
    const written: string[] = [];
    const progress = new TerminalProgress({ write: (t: string) => written.push(t) });
    progress.redraw();
    assert.deepEqual(written, []);
    progress.finish({ ...stats({ received: 1000, written: 990, rejected: 10 }), elapsedMs: 2_000 });
    const table = written.join('');
    assert.match(table, /received\s+1,000/);
    assert.match(table, /written\s+990/);
    assert.match(table, /rate\s+500 messages\/s/);
  });
});
