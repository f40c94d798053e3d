/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time per function and per module
 * (npm package, login-etl's own src/, Node internals), largest first.
 *
 *   node dist/bench/profile-summary.js /tmp/prof/CPU.*.cpuprofile [--top 10]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  readonly id: number;
  readonly children?: readonly number[];
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** The module a script URL belongs to: an npm package, login-etl's source, or Node itself. */
export function moduleOf(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg?.[1] !== undefined) return pkg[1];
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0] ?? ''}`;
  const own = /\/dist\/(src|bench)\/(.+)$/.exec(url);
  if (own?.[2] !== undefined) return `login-etl ${own[1]}/${own[2]}`;
  return url;
}

function main(): void {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '10' } } });
  const top = Number(values.top);
  if (positionals.length === 0) throw new Error('usage: profile-summary FILE.cpuprofile... [--top 10]');
  const byFunction = new Map<string, { ms: number; module: string }>();
  const byModule = new Map<string, number>();
  /** Node's own code (streams, sockets, crypto) and native calls counted for the package above them. */
  const byOwner = new Map<string, number>();
  let totalMs = 0;
  let idleMs = 0;
  for (const file of positionals) {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
    const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
    const parents = new Map<number, number>();
    for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
    /** A native function (socket writev, fs writeString) counts for the first non-Node module above it. */
    const caller = (id: number): string => {
      for (let at = parents.get(id); at !== undefined; at = parents.get(at)) {
        const frame = nodes.get(at)?.callFrame;
        if (frame === undefined || frame.url === '') continue;
        const module = moduleOf(frame.url, frame.functionName);
        // Past Node's own streams and sockets, to the package that wrote: the SDK, pg or pino.
        if (!module.startsWith('node:')) return module;
      }
      return 'no JS caller on the stack';
    };
    profile.samples.forEach((id, i) => {
      const node = nodes.get(id);
      const ms = (profile.timeDeltas[i] ?? 0) / 1000;
      if (node === undefined) return;
      const { functionName, url, lineNumber } = node.callFrame;
      if (functionName === '(idle)') {
        idleMs += ms;
        return;
      }
      const module = url === '' && !functionName.startsWith('(') ? `native, called from ${caller(id)}` : moduleOf(url, functionName);
      const where = url === '' ? '' : ` ${url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${lineNumber + 1}`;
      const key = `${functionName || '(anonymous)'}${where}${url === '' && !functionName.startsWith('(') ? ` (${module})` : ''}`;
      const entry = byFunction.get(key) ?? { ms: 0, module };
      entry.ms += ms;
      byFunction.set(key, entry);
      byModule.set(module, (byModule.get(module) ?? 0) + ms);
      const own = moduleOf(url, functionName);
      const owner = url === '' ? (functionName.startsWith('(') ? functionName : caller(id)) : own.startsWith('node:') ? caller(id) : own;
      byOwner.set(owner, (byOwner.get(owner) ?? 0) + ms);
      totalMs += ms;
    });
  }
  const pct = (ms: number) => `${((ms / totalMs) * 100).toFixed(1).padStart(5)}%`;
  const out: string[] = [`busy: ${(totalMs / 1000).toFixed(2)} s sampled (idle ${(idleMs / 1000).toFixed(2)} s, not counted)`, '', `top ${top} functions by self time:`];
  for (const [key, { ms, module }] of [...byFunction].sort((a, b) => b[1].ms - a[1].ms).slice(0, top)) {
    const tag = key.endsWith(`(${module})`) ? '' : `[${module}]  `;
    out.push(`${pct(ms)}  ${(ms / 1000).toFixed(2).padStart(6)} s  ${tag}${key}`);
  }
  out.push('', `top ${top} modules by self time:`);
  for (const [module, ms] of [...byModule].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    out.push(`${pct(ms)}  ${(ms / 1000).toFixed(2).padStart(6)} s  ${module}`);
  }
  out.push('', `top ${top} packages, Node's own code and native calls counted for the package that called them:`);
  for (const [owner, ms] of [...byOwner].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    out.push(`${pct(ms)}  ${(ms / 1000).toFixed(2).padStart(6)} s  ${owner}`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

main();
