/** The bench's tables, through the one table formatter of login-etl. */
import { formatTable } from '../src/observability/table.js';
import type { ScenarioResult } from './harness.js';
import type { Ratio } from './ratios.js';

export const fixed = (n: number | undefined, digits: number) => (n === undefined ? '—' : n.toFixed(digits));

export function table(results: readonly ScenarioResult[], computed: readonly Ratio[]): string {
  const head = ['scenario', 'msgs/s', 'msgs/s exec to exit', 'CPU s/10k', 'peak RSS MB', 'emulator CPU s/10k', 'postgres CPU s/10k', 'other load (cores)'];
  const rows = results.map((r) => [
    r.label,
    fixed(r.msgsPerSecond, 0),
    // The whole process, start-up and drain detection included, beside the measured window.
    fixed(r.processWallMs > 0 ? (r.msgsPerSecond * r.elapsedMs) / r.processWallMs : undefined, 0),
    fixed(r.cpuSecondsPer10k, 2),
    fixed(r.peakRssMb, 0),
    fixed(r.emulatorCpuSecondsPer10k, 2),
    fixed(r.postgresCpuSecondsPer10k, 2),
    fixed(r.otherCpuSeconds === undefined ? undefined : r.otherCpuSeconds / (r.scenarioWallMs / 1000), 2),
  ]);
  const out = [formatTable([head, ...rows], { indent: '', align: head.map((_, i) => (i === 0 ? 'left' : 'right')) }), ''];
  for (const r of computed) {
    const verdict = r.met === undefined ? '' : r.met ? '  met' : '  NOT met';
    out.push(`${r.name}: ${fixed(r.value, 2)}${r.target === undefined ? '' : ` (target ${r.target})${verdict}`}`);
  }
  return out.join('\n');
}

export function scaleTable(runs: readonly Record<string, unknown>[]): string {
  const head = ['instances', 'msgs/s', 'msgs/s per instance', 'consumer CPU s/10k', 'emulator CPU s/10k', 'postgres CPU s/10k', 'received per instance', 'exact'];
  const rows = runs.map((r) => {
    const n = r.instances as number;
    return [
      String(n),
      fixed(r.msgsPerSecond as number, 0),
      fixed((r.msgsPerSecond as number) / n, 0),
      fixed(r.consumerCpuSecondsPer10k as number, 2),
      fixed(r.emulatorCpuSecondsPer10k as number | undefined, 2),
      fixed(r.postgresCpuSecondsPer10k as number | undefined, 2),
      (r.receivedPerInstance as unknown[]).join(' / '),
      r.exact ? 'yes' : 'NO',
    ];
  });
  return formatTable([head, ...rows], { indent: '', align: head.map(() => 'right') });
}
