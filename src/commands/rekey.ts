/** `login-etl rekey`: siv or vault values of earlier keys rewritten to the active key. */
import { KEY_SETTINGS, settingLabel } from '../settings.js';
import { ConfigError } from '../errors.js';
import { lines, logDestination, wholeNumber, type Command } from '../cli/command.js';

const SETTINGS = ['databaseUrl', ...KEY_SETTINGS, 'maskMode', 'logLevel', 'logFormat'] as const;

export const rekey: Command = {
  summary: 'After a key change, rewrite siv or vault values of earlier keys to the active key, in batches, while the pipeline runs.',
  settings: SETTINGS,
  settingHelp: { maskMode: { description: 'siv or vault, the mode the pipeline masks with (required: hmac values are one-way and cannot be rewritten).' } },
  extra: {
    'batch-size': { type: 'string', default: '1000', description: 'Rows rewritten per transaction (1-100000).' },
  },
  async action({ flags, env, io }) {
    const [{ assertKeysFitMode, collectSettings, requiredSetting }, { keysFor }, { default: pg }, { createLogger }, { migrate }, { rekey: rewrite }] = await Promise.all([
      import('../config.js'),
      import('../cli/keys.js'),
      import('pg'),
      import('../observability/logger.js'),
      import('../sink/migrate.js'),
      import('../rekey.js'),
    ]);
    const raw = collectSettings(SETTINGS, flags, env);
    const databaseUrl = requiredSetting('databaseUrl', raw);
    const mode = requiredSetting('maskMode', raw);
    if (mode === 'hmac') {
      throw new ConfigError(settingLabel('maskMode'), 'rekey needs siv or vault: hmac values are one-way and cannot be rewritten');
    }
    const keys = keysFor(raw, env, lines(io).err);
    // A key holder: private keys are expected here, so only the fit to the mode is checked.
    assertKeysFitMode(keys, mode);
    const batchSize = wholeNumber('batch-size', flags['batch-size'], 1, 100_000);
    const log = createLogger(requiredSetting('logLevel', raw), logDestination(io.stdout), { format: requiredSetting('logFormat', raw) });
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 2, application_name: 'login-etl rekey' });
    try {
      await migrate(pool);
      const report = await rewrite(pool, keys.ring, { mode, batchSize, log });
      log.info({ ...report, keyId: keys.ring.active.id }, 'rekey done');
      return 0;
    } finally {
      await pool.end();
    }
  },
};
