/** `login-etl demo`: the pipeline on an embedded SQS emulator and Postgres, with sample events. */
import { relative } from 'node:path';
import { lines, logDestination, wholeNumber, type Command } from '../cli/command.js';

/** `node dist/src/cli.js`, or however this process was started, relative to the current directory. */
function selfCommand(): string {
  const script = relative(process.cwd(), process.argv[1] ?? 'dist/src/cli.js');
  return `node ${/^[\w./-]+$/.test(script) ? script : `'${script.replaceAll("'", "'\\''")}'`}`;
}

/** The demo prints its own summary; log lines would bury it. */
const DEMO_LOG_LEVEL = 'error';

export const demo: Command = {
  summary: 'Run the pipeline on an embedded SQS emulator and Postgres loaded with sample events.',
  settings: ['logLevel'],
  settingHelp: { logLevel: { description: 'fatal, error, warn, info, debug, trace or silent.', default: DEMO_LOG_LEVEL } },
  extra: {
    keep: { type: 'boolean', description: 'Stay up afterwards and print how to reach the queue and the database.' },
    count: { type: 'string', default: '100', description: 'Sample events to load.' },
    seed: { type: 'string', default: '1', description: 'Seed of the sample data.' },
  },
  stopping: 'stopping; the embedded Postgres and the emulator are deleted next (send it again to force)',
  async action({ flags, env, stop, io }) {
    const [{ collectSettings, requiredSetting }, { runDemo }] = await Promise.all([import('../config.js'), import('../demo.js')]);
    const raw = collectSettings(['logLevel'], { 'log-level': flags['log-level'] ?? (env.LOG_LEVEL || DEMO_LOG_LEVEL) }, {});
    const logLevel = requiredSetting('logLevel', raw);
    const summary = await runDemo({
      count: wholeNumber('count', flags.count, 1, 1_000_000),
      seed: wholeNumber('seed', flags.seed, 0, 2 ** 32 - 1),
      keep: flags.keep === true,
      logLevel,
      stop,
      print: lines(io).out,
      logTo: logDestination(io.stderr),
      self: selfCommand(),
    });
    return summary.written + summary.rejected + summary.duplicates === summary.received ? 0 : 1;
  },
};
