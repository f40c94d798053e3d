/** The ratios the bench's targets are stated in, computed from one run's results. */
import type { ScenarioName, ScenarioResult } from './harness.js';

export interface Ratio {
  readonly name: string;
  readonly value: number | undefined;
  readonly target: string | undefined;
  readonly met: boolean | undefined;
}

export function ratios(results: readonly ScenarioResult[]): Ratio[] {
  const get = (name: ScenarioName) => results.find((r) => r.scenario === name);
  const pipeline = get('pipeline');
  const divide = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || b === 0 ? undefined : a / b);
  const ratio = (name: string, value: number | undefined, target?: { atLeast?: number; atMost?: number }): Ratio => ({
    name,
    value,
    target: target?.atLeast !== undefined ? `>= ${target.atLeast}` : target?.atMost !== undefined ? `<= ${target.atMost}` : undefined,
    met:
      value === undefined || target === undefined
        ? undefined
        : target.atLeast !== undefined
          ? value >= target.atLeast
          : value <= (target.atMost ?? Infinity),
  });
  return [
    ratio('pipeline msgs/s ÷ stock-SDK queue ceiling', divide(pipeline?.msgsPerSecond, get('queue-stock')?.msgsPerSecond), { atLeast: 1.5 }),
    ratio('pipeline msgs/s ÷ naive', divide(pipeline?.msgsPerSecond, get('naive')?.msgsPerSecond), { atLeast: 8 }),
    ratio('pipeline CPU per message ÷ emulator CPU per message', divide(pipeline?.cpuSeconds, pipeline?.emulatorCpuSeconds), { atMost: 1 }),
    ratio("pipeline msgs/s ÷ pipeline's-Queue ceiling", divide(pipeline?.msgsPerSecond, get('queue-pipeline')?.msgsPerSecond)),
    ratio("pipeline's-Queue ceiling ÷ stock-SDK ceiling", divide(get('queue-pipeline')?.msgsPerSecond, get('queue-stock')?.msgsPerSecond)),
    ratio('pipeline msgs/s ÷ COPY ceiling', divide(pipeline?.msgsPerSecond, get('copy')?.msgsPerSecond)),
    // The client decision: the lean client stays only if it is at least 25% cheaper per message.
    ratio('lean ÷ tuned-SDK consumer CPU per message, queue ceilings (1b ÷ 1c)', divide(get('queue-pipeline')?.cpuSecondsPer10k, get('queue-sdk')?.cpuSecondsPer10k), { atMost: 0.75 }),
    ratio('lean ÷ tuned-SDK consumer CPU per message, pipeline (3 ÷ 3b)', divide(pipeline?.cpuSecondsPer10k, get('pipeline-sdk')?.cpuSecondsPer10k), { atMost: 0.75 }),
  ];
}
