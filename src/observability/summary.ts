/** A run's counts in one line, for people: `120 received, 118 written, 1 rejected, ...`. */
import type { RunSummary } from '../run.js';

export function summaryLine(summary: RunSummary): string {
  const parts = [
    `${summary.received} received`,
    `${summary.written} written`,
    `${summary.rejected} rejected`,
    `${summary.duplicates} duplicates skipped`,
  ];
  if (summary.released > 0) parts.push(`${summary.released} handed back to the queue`);
  return `${parts.join(', ')} in ${(summary.elapsedMs / 1000).toFixed(2)} s`;
}
