/** `login-etl run`: the pipeline, until a signal or, with --drain, until the queue is empty. */
import { RUN_SETTINGS } from '../settings.js';
import { lines, logDestination, type Command } from '../cli/command.js';

export const run: Command = {
  summary: 'Consume the queue into Postgres until SIGINT/SIGTERM (or, with --drain, until it is empty).',
  settings: RUN_SETTINGS,
  stopping: 'finishing batches in flight (send it again to force)',
  async action({ flags, env, stop, io }) {
    const { err } = lines(io);
    const [{ collectSettings, parseRunConfig }, { createLogger }, { runPipeline }, { summaryLine }] = await Promise.all([
      import('../config.js'),
      import('../observability/logger.js'),
      import('../run.js'),
      import('../observability/summary.js'),
    ]);
    const config = parseRunConfig(collectSettings(RUN_SETTINGS, flags, env), env);
    // A drain on a terminal shows a progress line on stderr instead of a log line per batch:
    // unless a level is asked for, only warnings and errors interrupt it.
    const progress = config.drain && io.stderr.isTTY === true ? new (await import('../observability/progress.js')).TerminalProgress(io.stderr) : undefined;
    const levelGiven = flags['log-level'] !== undefined || (env.LOG_LEVEL ?? '') !== '';
    const level = progress !== undefined && !levelGiven ? 'warn' : config.logLevel;
    const log = createLogger(level, logDestination(io.stdout), {
      format: config.logFormat,
      ...(progress === undefined ? {} : { around: { before: () => progress.clear(), after: () => progress.redraw() } }),
    });
    const summary = await runPipeline(config, { log, stop, progress });
    // Stopped by a signal: the person who pressed Ctrl-C sees what was done, whatever the log
    // level (the progress display has shown its summary table already).
    if (stop.aborted && progress === undefined) err(`stopped: ${summaryLine(summary)}`);
    return 0;
  },
};
