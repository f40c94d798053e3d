/**
 * Preloaded (`node --import`) into every child process the bench measures: when the process
 * exits, it writes its own CPU time and peak RSS to stderr as one JSON line, so the bench gets
 * exact figures for the whole life of the process without changing the program measured.
 */
import { writeSync } from 'node:fs';

/** The key of the JSON line this module writes; `parseUsage` in proc.ts looks for it. */
export const USAGE_KEY = 'benchUsage';

process.on('exit', () => {
  const cpu = process.cpuUsage();
  const usage = process.resourceUsage();
  writeSync(2, `\n${JSON.stringify({ [USAGE_KEY]: { userUs: cpu.user, systemUs: cpu.system, maxRssKb: usage.maxRSS } })}\n`);
});
