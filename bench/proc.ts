/**
 * Reading what the kernel knows about processes: CPU seconds from /proc/<pid>/stat, resident
 * memory from /proc/<pid>/status, and the CPU of a whole Postgres server (postmaster and
 * backends, living and exited). Linux only; every reader returns undefined elsewhere.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second; 100 on every Linux this runs on (getconf CLK_TCK). */
const CLOCK_TICKS = 100;

interface ProcStat {
  readonly pid: number;
  readonly comm: string;
  readonly ppid: number;
  /** utime + stime of the process itself, in seconds. */
  readonly selfCpuSeconds: number;
  /** cutime + cstime: children that exited and were waited for, in seconds. */
  readonly childrenCpuSeconds: number;
}

function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm is in parentheses and may contain spaces; the fields after the last ')' are fixed.
  const close = text.lastIndexOf(')');
  const comm = text.slice(text.indexOf('(') + 1, close);
  const fields = text.slice(close + 2).split(' ');
  const n = (i: number) => Number(fields[i] ?? 0);
  // fields[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17, ppid 4.
  return {
    pid,
    comm,
    ppid: n(1),
    selfCpuSeconds: (n(11) + n(12)) / CLOCK_TICKS,
    childrenCpuSeconds: (n(13) + n(14)) / CLOCK_TICKS,
  };
}

/** utime + stime of one process, in seconds. */
export function processCpuSeconds(pid: number): number | undefined {
  return readStat(pid)?.selfCpuSeconds;
}

/** A field of /proc/<pid>/status in MB (VmRSS, VmHWM). */
export function statusMb(pid: number, field: 'VmRSS' | 'VmHWM'): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return match?.[1] === undefined ? undefined : Number(match[1]) / 1024;
  } catch {
    return undefined;
  }
}

function allStats(): ProcStat[] {
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return [];
  }
  return names.flatMap((name) => (/^\d+$/.test(name) ? (readStat(Number(name)) ?? []) : []));
}

/**
 * CPU seconds used so far by the Postgres servers started by process `parentPid`: every
 * `postgres` process whose parent is `parentPid` (a postmaster), plus its living descendants,
 * plus what its exited, reaped children used (cutime + cstime). Differences of two readings are
 * the server's CPU over an interval.
 */
export function postgresCpuSeconds(parentPid: number = process.pid): number | undefined {
  const stats = allStats();
  if (stats.length === 0) return undefined;
  const children = new Map<number, ProcStat[]>();
  for (const stat of stats) {
    const list = children.get(stat.ppid) ?? [];
    list.push(stat);
    children.set(stat.ppid, list);
  }
  const roots = (children.get(parentPid) ?? []).filter((s) => s.comm.startsWith('postgres'));
  if (roots.length === 0) return undefined;
  let total = 0;
  const visit = (stat: ProcStat) => {
    total += stat.selfCpuSeconds + stat.childrenCpuSeconds;
    for (const child of children.get(stat.pid) ?? []) visit(child);
  };
  for (const root of roots) visit(root);
  return total;
}

export interface ChildUsage {
  readonly cpuSeconds: number;
  readonly maxRssMb: number;
}

/** The line usage-reporter.ts wrote to a child's stderr, if any. */
export function parseUsage(stderr: string): ChildUsage | undefined {
  for (const line of stderr.split('\n').reverse()) {
    if (!line.startsWith('{"benchUsage"')) continue;
    try {
      const { benchUsage: u } = JSON.parse(line) as { benchUsage: { userUs: number; systemUs: number; maxRssKb: number } };
      return { cpuSeconds: (u.userUs + u.systemUs) / 1e6, maxRssMb: u.maxRssKb / 1024 };
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/**
 * Busy CPU seconds of the whole machine so far (all cores, everything but idle and iowait),
 * from /proc/stat. Over a scenario, this minus what the bench's own processes used is what
 * other programs on the machine took: the noise in that scenario's numbers.
 */
export function machineBusyCpuSeconds(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const fields = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}
