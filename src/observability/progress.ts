/**
 * The progress line of `run --drain` on a terminal: processed, rate, approximately how many
 * messages are left, and rejections, redrawn in place on stderr; a summary table at the end.
 * Plain ANSI (carriage return, erase line): nothing to install, and nothing is drawn unless
 * stderr is a terminal, so logs and pipes never see it.
 */
import type { PipelineStats } from '../pipeline.js';
import type { QueueDepth } from '../source/queue.js';
import { formatTable } from './table.js';

export interface ProgressView {
  readonly stats: Readonly<PipelineStats>;
}

/** What `run` tells a progress display. */
export interface ProgressReporter {
  /** The pipeline is running; its stats can be read from now on. */
  start(view: ProgressView): void;
  /** The queue's approximate depth, whenever it was read. */
  depth(depth: QueueDepth): void;
  /** The run ended: replace the line with a summary. */
  finish(summary: Readonly<PipelineStats> & { readonly elapsedMs: number }): void;
  /** Stop drawing (also after a failure); idempotent. */
  stop(): void;
  /** Around other output to the same terminal, so it does not land in the middle of the line. */
  clear(): void;
  redraw(): void;
}

interface Terminal {
  write(text: string): unknown;
  readonly columns?: number;
}

const REDRAW_MS = 200;
/** The rate is measured over this window, so it follows changes without jumping about. */
const RATE_WINDOW_MS = 5_000;
const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const BAR_WIDTH = 24;

const number = (n: number) => Math.round(n).toLocaleString('en-US');

function duration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  const m = Math.floor(seconds / 60);
  return `${m}:${String(seconds % 60).padStart(2, '0')}`;
}

export class TerminalProgress implements ProgressReporter {
  #view: ProgressView | undefined;
  #timer: NodeJS.Timeout | undefined;
  #frame = 0;
  #drawn = false;
  readonly #startedMs: number;
  readonly #samples: { atMs: number; processed: number }[] = [];
  /** The last depth read, and how many had been processed when it was read. */
  #depth: { total: number; processedAt: number } | undefined;

  /** `now` is a monotonic clock in milliseconds: elapsed time and rates must not follow a wall-clock step. */
  constructor(
    private readonly terminal: Terminal,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.#startedMs = now();
  }

  start(view: ProgressView): void {
    this.#view = view;
    this.#timer ??= setInterval(() => this.redraw(), REDRAW_MS);
    // The display must never keep a finished process alive.
    this.#timer.unref();
    this.redraw();
  }

  depth(depth: QueueDepth): void {
    this.#depth = { total: depth.visible + depth.inFlight + depth.delayed, processedAt: this.#processed() };
  }

  #processed(): number {
    const s = this.#view?.stats;
    return s === undefined ? 0 : s.written + s.rejected + s.duplicates;
  }

  /** Messages per second over the last few seconds. */
  #rate(processed: number, atMs: number): number {
    this.#samples.push({ atMs, processed });
    while (this.#samples.length > 2 && (this.#samples[0]?.atMs ?? atMs) < atMs - RATE_WINDOW_MS) this.#samples.shift();
    const first = this.#samples[0];
    if (first === undefined || atMs - first.atMs < 500) return 0;
    return ((processed - first.processed) * 1000) / (atMs - first.atMs);
  }

  /** The text of the line, without control characters; exported for tests through `line()`. */
  line(): string {
    const atMs = this.now();
    const processed = this.#processed();
    const rate = this.#rate(processed, atMs);
    const rejected = this.#view?.stats.rejected ?? 0;
    // Depth is read every few seconds; what was processed since then has left the queue too.
    const left = this.#depth === undefined ? undefined : Math.max(0, this.#depth.total - (processed - this.#depth.processedAt));
    const parts = [`${SPINNER[this.#frame % SPINNER.length] ?? ''} ${number(processed)} processed`, `${number(rate)}/s`];
    if (left === undefined) parts.push('? left');
    else {
      const share = processed + left === 0 ? 1 : processed / (processed + left);
      const filled = Math.round(share * BAR_WIDTH);
      parts.push(`~${number(left)} left`, `${'█'.repeat(filled)}${'░'.repeat(BAR_WIDTH - filled)} ${Math.floor(share * 100)}%`);
      if (rate > 0 && left > 0) parts.push(`eta ${duration((left / rate) * 1000)}`);
    }
    parts.push(`${number(rejected)} rejected`, duration(atMs - this.#startedMs));
    return parts.join('  ');
  }

  redraw(): void {
    if (this.#view === undefined) return;
    this.#frame += 1;
    // A terminal of unknown size (a pseudo-terminal nobody sized) reports 0 columns: take 80.
    const width = Math.max(20, (this.terminal.columns || 80) - 1);
    // Cut to the terminal width: a wrapped line could not be redrawn in place.
    this.terminal.write(`\r\x1b[2K${[...this.line()].slice(0, width).join('')}`);
    this.#drawn = true;
  }

  clear(): void {
    if (this.#drawn) this.terminal.write('\r\x1b[2K');
    this.#drawn = false;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.clear();
    this.#view = undefined;
  }

  finish(summary: Readonly<PipelineStats> & { readonly elapsedMs: number }): void {
    this.stop();
    const seconds = summary.elapsedMs / 1000;
    const processed = summary.written + summary.rejected + summary.duplicates;
    this.terminal.write(`${formatSummary([
      ['received', number(summary.received)],
      ['written', number(summary.written)],
      ['rejected', number(summary.rejected)],
      ['duplicates skipped', number(summary.duplicates)],
      ['handed back', number(summary.released)],
      ['elapsed', `${seconds.toFixed(1)} s`],
      ['rate', `${number(seconds > 0 ? processed / seconds : 0)} messages/s`],
    ])}\n`);
  }
}

function formatSummary(rows: readonly [string, string][]): string {
  return formatTable(rows, { header: false, align: ['left', 'right'], gap: '   ', frame: true });
}
