/**
 * The one plain-text table of login-etl: `report`, `rejected list`, the demo, the summary of
 * `run --drain` and the bench all print through it. Columns are padded to their widest cell;
 * numbers are right-aligned. Control characters in cells are escaped (printable), so a table of
 * stored text cannot drive the terminal even if a caller forgot to.
 */
import { printable } from './printable.js';

export type Alignment = 'left' | 'right';

export interface TableOptions {
  /** The first row is a header, underlined (default true). */
  readonly header?: boolean;
  /** Per column; by default a column is right-aligned when every data cell is a number. */
  readonly align?: readonly Alignment[];
  /** Before every line (default two spaces). */
  readonly indent?: string;
  /** Between columns (default two spaces). */
  readonly gap?: string;
  /** A rule of `─` above and below the table (the run summary). */
  readonly frame?: boolean;
}

/** A number as people write them in a table: 1,234 or 2.73; a dash stands for "not measured". */
const NUMBER = /^(-?[\d,]+(\.\d+)?|—)$/;

export function formatTable(cells: readonly (readonly string[])[], options: TableOptions = {}): string {
  const header = options.header ?? true;
  const indent = options.indent ?? '  ';
  const gap = options.gap ?? '  ';
  const rows = cells.map((r) => r.map(printable));
  const columns = Math.max(0, ...rows.map((r) => r.length));
  const widths = Array.from({ length: columns }, (_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const data = header ? rows.slice(1) : rows;
  const align = widths.map(
    (_, i): Alignment =>
      options.align?.[i] ?? (data.length > 0 && data.every((r) => NUMBER.test(r[i] ?? '')) ? 'right' : 'left'),
  );
  const line = (r: readonly string[]) =>
    `${indent}${widths.map((w, i) => (align[i] === 'right' ? (r[i] ?? '').padStart(w) : (r[i] ?? '').padEnd(w))).join(gap)}`.trimEnd();
  const lines = rows.map(line);
  if (header) lines.splice(1, 0, `${indent}${widths.map((w) => '-'.repeat(w)).join(gap)}`);
  if (options.frame === true) {
    const rule = `${indent}${'─'.repeat(widths.reduce((sum, w) => sum + w, 0) + gap.length * Math.max(0, columns - 1))}`;
    return [rule, ...lines, rule].join('\n');
  }
  return lines.join('\n');
}
