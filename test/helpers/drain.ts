/**
 * Drains that must end by themselves. A drain test given only a safety timeout passes even when
 * drain detection is broken (the timeout ends it); these fail it instead.
 */
import assert from 'node:assert/strict';
import type { Pipeline, PipelineStats } from '../../src/pipeline.js';
import type { Sink } from '../../src/sink/postgres.js';

/** Runs a draining pipeline; fails the test if its safety timeout, not the drain, ended it. */
export async function drainPipeline(pipeline: Pipeline, safetyTimeoutMs = 20_000): Promise<PipelineStats> {
  const safety = AbortSignal.timeout(safetyTimeoutMs);
  const stats = await pipeline.run(safety);
  assert.equal(safety.aborted, false, `the drain did not end by itself within ${safetyTimeoutMs} ms`);
  return stats;
}

/** A safety stop for `runPipeline` and a check, after it, that the drain ended by itself. */
export function safetyStop(timeoutMs = 60_000): { readonly signal: AbortSignal; assertDrained(): void } {
  const signal = AbortSignal.timeout(timeoutMs);
  return {
    signal,
    assertDrained: () => assert.equal(signal.aborted, false, `the drain did not end by itself within ${timeoutMs} ms`),
  };
}

/**
 * A sink whose writes go through `write`; its forwarding claims and records go to `real`, if any
 * (without one, every claim takes).
 */
export function sinkWith(write: Sink['write'], real?: Sink): Sink {
  return {
    write,
    claimForwarding: async (messageIds, claimant) => (real === undefined ? [...messageIds] : await real.claimForwarding(messageIds, claimant)),
    releaseForwardingClaims: async (messageIds, claimant) => await real?.releaseForwardingClaims(messageIds, claimant),
    recordForwarding: async (record) => await real?.recordForwarding(record),
  };
}
