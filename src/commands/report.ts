/** `login-etl report`: what analysts ask of user_logins first, read-only. */
import { lines, wholeNumber, type Command } from '../cli/command.js';

export const report: Command = {
  summary:
    'Print what analysts ask first: logins per day, per device type and per app version, and the most repeated masked ip and device_id values. Read-only.',
  settings: ['databaseUrl'],
  extra: {
    json: { type: 'boolean', description: 'Print one JSON object instead of tables.' },
    days: { type: 'string', default: '30', description: 'Most recent days in the per-day section (1-3660).' },
    top: { type: 'string', default: '10', description: 'Rows in each of the other sections (1-1000).' },
  },
  async action({ flags, env, io }) {
    const { out, err } = lines(io);
    const [{ collectSettings, requiredSetting }, { default: pg }, { buildReport, emptyReport, formatReport }, { printableJson }] = await Promise.all([
      import('../config.js'),
      import('pg'),
      import('../report.js'),
      import('../observability/printable.js'),
    ]);
    const databaseUrl = requiredSetting('databaseUrl', collectSettings(['databaseUrl'], flags, env));
    const options = { days: wholeNumber('days', flags.days, 1, 3_660), top: wholeNumber('top', flags.top, 1, 1_000) };
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 1, application_name: 'login-etl report' });
    try {
      let result = await buildReport(pool, options);
      if (result === undefined) {
        // A database the pipeline has not written to yet: an empty report, and why it is empty.
        err('user_logins does not exist yet: the pipeline has not run against this database (`login-etl run` or `login-etl migrate` creates it)');
        result = emptyReport();
      }
      out(flags.json === true ? printableJson(result, 2) : formatReport(result));
      return 0;
    } finally {
      await pool.end();
    }
  },
};
