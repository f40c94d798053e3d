/** `login-etl rejected list|show|export|replay`: rejected messages, their originals for key holders. */
import { rm } from 'node:fs/promises';
import { KEY_SETTINGS, SQS_SETTINGS } from '../settings.js';
import { UsageError } from '../errors.js';
import { createPrivateFile, lines, timeFlag, wholeNumber, type Command } from '../cli/command.js';

export const rejected: Command = {
  summary:
    'Rejected messages: `list` what is kept in clear; for key holders, `show ID...`, `export` or `replay --queue-url URL` the sealed originals. Every opening is recorded in login_etl.unmask_audit.',
  usage: 'list | show ID... | export | replay [options]',
  settings: ['databaseUrl', ...KEY_SETTINGS, ...SQS_SETTINGS],
  extra: {
    since: { type: 'string', description: 'Only messages rejected at or after this time (ISO 8601, e.g. 2026-11-29 or 2026-11-29T10:00:00Z).' },
    until: { type: 'string', description: 'Only messages rejected before this time (ISO 8601).' },
    limit: { type: 'string', default: '1000', description: 'Most messages to list, open or replay (1-100000), oldest first.' },
    'not-replayed': { type: 'boolean', description: 'Only messages not replayed yet.' },
    json: { type: 'boolean', description: 'list: one JSON object per line instead of a table.' },
    out: { type: 'string', description: 'export: file for the JSON Lines (created with mode 0600; must not exist yet). Default: standard output.' },
    reason: { type: 'string', description: 'Why, for the audit record (login_etl.unmask_audit).' },
  },
  positionals: true,
  async action({ flags, env, positionals, io }) {
    const { out, err } = lines(io);
    const [verb, ...ids] = positionals;
    if (verb !== 'list' && verb !== 'show' && verb !== 'export' && verb !== 'replay') {
      throw new UsageError('say what to do: login-etl rejected list | show ID... | export | replay --queue-url URL; see login-etl rejected --help');
    }
    if (verb === 'show' && ids.length === 0) throw new UsageError('rejected show needs message ids (see login-etl rejected list)');
    if (verb === 'list' && ids.length > 0) throw new UsageError('rejected list takes no message ids; choose with --since, --until and --limit');
    if (verb !== 'export' && flags.out !== undefined) throw new UsageError('--out goes with rejected export');
    const [{ collectSettings, requiredSetting, parseSqsConfig }, { keysFor }, { default: pg }, { listRejected, printBodies, replayBodies }] = await Promise.all([
      import('../config.js'),
      import('../cli/keys.js'),
      import('pg'),
      import('../rejected.js'),
    ]);
    const raw = collectSettings(['databaseUrl', ...KEY_SETTINGS, ...SQS_SETTINGS], flags, env);
    const databaseUrl = requiredSetting('databaseUrl', raw);
    const filter = {
      ...(ids.length > 0 ? { messageIds: ids } : {}),
      ...(typeof flags.since === 'string' ? { since: timeFlag('since', flags.since) } : {}),
      ...(typeof flags.until === 'string' ? { until: timeFlag('until', flags.until) } : {}),
      notReplayed: flags['not-replayed'] === true,
      // Message ids named one by one are all shown, whatever --limit says.
      limit: Math.max(wholeNumber('limit', flags.limit, 1, 100_000), ids.length),
    };
    const reason = typeof flags.reason === 'string' && flags.reason.trim() !== '' ? flags.reason : undefined;
    if (verb !== 'list' && reason === undefined) throw new UsageError(`rejected ${verb} opens original bodies: say why with --reason, for the audit record`);
    // Every setting is checked before anything is read, so a bad one costs no audit record.
    const sqs = verb === 'replay' ? parseSqsConfig(raw) : undefined;
    const ring = verb === 'list' ? undefined : keysFor(raw, env, err).ring;
    const file = verb === 'export' && typeof flags.out === 'string' ? await createPrivateFile(flags.out) : undefined;
    const output = {
      out: async (line: string) => {
        if (file === undefined) out(line);
        else await file.write(`${line}\n`);
      },
      err,
    };
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 2, application_name: 'login-etl rejected' });
    try {
      if (ring === undefined) return await listRejected(pool, filter, flags.json === true, output);
      const selection = { filter, source: ids.length > 0 ? ('arguments' as const) : ('filter' as const), reason };
      if (sqs === undefined) return await printBodies(pool, ring, selection, verb === 'show' ? 'rejected-show' : 'rejected-export', output);
      const { createSqsClient } = await import('../source/sqs.js');
      const client = createSqsClient(sqs, { maxSockets: 16 });
      try {
        return await replayBodies(pool, ring, selection, client, sqs.queueUrl, output);
      } finally {
        client.destroy();
      }
    } catch (e) {
      // An export that failed leaves no file behind, rather than an empty or partial one.
      if (file !== undefined && typeof flags.out === 'string') await file.close().then(() => rm(flags.out as string, { force: true }), () => undefined);
      throw e;
    } finally {
      await pool.end();
      await file?.close().catch(() => undefined);
    }
  },
};
