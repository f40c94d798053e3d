/**
 * The measured drain both bench consumers share: `concurrency` loops, each calling `step` until
 * `expected` messages are deleted, the window timed from the first step to the delete that
 * reaches `expected`, and the process's CPU over the loops.
 */
export interface DrainMeasure {
  readonly deleted: number;
  readonly elapsedMs: number;
  readonly cpuSeconds: number;
}

/**
 * `step` receives once, handles what it got and deletes it; it resolves with how many messages
 * it deleted. A step that throws after the drain is done (its long poll aborted) ends its loop;
 * one that throws before fails the drain.
 */
export async function drainInLoops(concurrency: number, expected: number, step: (signal: AbortSignal) => Promise<number>): Promise<DrainMeasure> {
  const done = new AbortController();
  let deleted = 0;
  let finishedAt = 0;
  const cpuBefore = process.cpuUsage();
  const startedAt = performance.now();
  const loop = async () => {
    while (!done.signal.aborted) {
      let n: number;
      try {
        n = await step(done.signal);
      } catch (err) {
        if (done.signal.aborted) return;
        throw err;
      }
      // Added after the await: `deleted += await step()` would read `deleted` before the step
      // and lose what other loops added meanwhile.
      deleted += n;
      if (deleted >= expected && finishedAt === 0) {
        finishedAt = performance.now();
        done.abort();
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  const cpu = process.cpuUsage(cpuBefore);
  return { deleted, elapsedMs: finishedAt - startedAt, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}
