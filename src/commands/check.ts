/** `login-etl check`: a run configuration verified without consuming anything. */
import { KEY_SETTINGS, RUN_SETTINGS, SQS_SETTINGS, type SettingName } from '../settings.js';
import { lines, type Command } from '../cli/command.js';

/** What check reads: the queue (through run's SQS client), the database and the keys. It parses run's environment too, as run would. */
const CHECK_SETTINGS = [...SQS_SETTINGS, 'sqsClient', 'sqsTimeoutSeconds', 'databaseUrl', ...KEY_SETTINGS, 'maskMode'] as const satisfies readonly SettingName[];

export const check: Command = {
  summary:
    'Verify a run configuration without consuming anything: settings and key, the queue (GetQueueAttributes, through the SQS client run would use), the database and the columns of user_logins. Exit 0 if all pass, 1 if any fails.',
  settings: CHECK_SETTINGS,
  async action({ flags, env, io }) {
    const { out, err } = lines(io);
    const [{ collectSettings, parseRunConfig }, { formatCheck, runChecks }] = await Promise.all([import('../config.js'), import('../check.js')]);
    // Run's other settings come from the environment only here, and a bad one fails check as it would fail run.
    const config = parseRunConfig(collectSettings(RUN_SETTINGS, flags, env), env);
    for (const warning of config.keyWarnings ?? []) err(`warning: ${warning}`);
    const results = await runChecks(config);
    for (const result of results) out(formatCheck(result));
    return results.every((r) => r.ok) ? 0 : 1;
  },
};
