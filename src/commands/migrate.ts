/** `login-etl migrate`: the login_etl schema and user_logins, created if missing. */
import { lines, type Command } from '../cli/command.js';

export const migrate: Command = {
  summary: 'Create the login_etl schema and user_logins if missing (run does this too).',
  settings: ['databaseUrl'],
  async action({ flags, env, io }) {
    const { out } = lines(io);
    const [{ collectSettings, requiredSetting }, { default: pg }, { migrate: apply }] = await Promise.all([import('../config.js'), import('pg'), import('../sink/migrate.js')]);
    const databaseUrl = requiredSetting('databaseUrl', collectSettings(['databaseUrl'], flags, env));
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
    try {
      const { applied } = await apply(pool);
      out(applied.length === 0 ? 'schema is up to date' : `applied ${applied.join(', ')}`);
    } finally {
      await pool.end();
    }
    return 0;
  },
};
