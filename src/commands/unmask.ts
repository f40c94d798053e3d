/** `login-etl unmask`: for key holders, the originals of masked values, each use audited first. */
import { createInterface } from 'node:readline';
import { KEY_SETTINGS } from '../settings.js';
import { ConfigError, UsageError } from '../errors.js';
import { lines, type Command } from '../cli/command.js';
import { plural } from '../plural.js';

/** unmask.ts's QUERY_TIMEOUT_MS, stated here so that --help loads nothing (a test compares them). */
export const UNMASK_QUERY_TIMEOUT_SECONDS = 60;
const PII_FIELDS = ['ip', 'device_id'] as const;

export const unmask: Command = {
  summary:
    'For key holders: print the originals of masked values (arguments, stdin, or --query), as JSON Lines. Each use is recorded in login_etl.unmask_audit first.',
  usage: '[options] [VALUE...]',
  settings: ['databaseUrl', ...KEY_SETTINGS],
  extra: {
    query: {
      type: 'string',
      description: `One SQL statement whose first column holds the values to unmask; run read-only, on its own connection, for at most ${UNMASK_QUERY_TIMEOUT_SECONDS} s.`,
    },
    field: {
      type: 'string',
      description:
        'The column the values come from, ip or device_id: siv values decrypt only as their own column. Needed for siv values given as arguments or on stdin, and for a --query whose first column is not user_logins.masked_ip or masked_device_id.',
    },
    reason: { type: 'string', description: 'Why, for the audit record (login_etl.unmask_audit).' },
  },
  positionals: true,
  async action({ flags, env, positionals, io }) {
    const { out, err } = lines(io);
    const [{ collectSettings, requiredSetting }, { keysFor }, { default: pg }, { unmask: recover, valuesFromQuery }, { printable, printableJson }] = await Promise.all([
      import('../config.js'),
      import('../cli/keys.js'),
      import('pg'),
      import('../unmask.js'),
      import('../observability/printable.js'),
    ]);
    type UnmaskSource = import('../unmask.js').UnmaskSource;
    type PiiField = import('../transform/mask.js').PiiField;
    const raw = collectSettings(['databaseUrl', ...KEY_SETTINGS], flags, env);
    const databaseUrl = requiredSetting('databaseUrl', raw);
    const { ring } = keysFor(raw, env, err);
    const query = typeof flags.query === 'string' ? flags.query : undefined;
    if (query !== undefined && positionals.length > 0) throw new UsageError('give values as arguments or --query, not both');
    const fieldFlag = flags.field;
    if (fieldFlag !== undefined && (typeof fieldFlag !== 'string' || !(PII_FIELDS as readonly string[]).includes(fieldFlag))) {
      throw new ConfigError('--field', `must be one of ${PII_FIELDS.join(', ')}`);
    }
    let field = fieldFlag as PiiField | undefined;
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 2, application_name: 'login-etl unmask' });
    try {
      let source: UnmaskSource;
      let values: string[];
      if (query !== undefined) {
        const queried = await valuesFromQuery(databaseUrl, query);
        if (queried.field !== undefined && field !== undefined && queried.field !== field) {
          throw new UsageError(`--field ${field} contradicts the query's first column, which is user_logins.masked_${queried.field}`);
        }
        // A first column that is neither masked column leaves siv values needing --field (unmask
        // refuses them without it); vault tokens carry their field in their vault entry.
        field = queried.field ?? field;
        [source, values] = ['query', queried.values];
      } else if (positionals.length > 0) [source, values] = ['arguments', [...positionals]];
      else {
        values = [];
        for await (const line of createInterface({ input: io.stdin, crlfDelay: Infinity })) if (line.trim() !== '') values.push(line.trim());
        source = 'stdin';
      }
      const reason = typeof flags.reason === 'string' && flags.reason !== '' ? flags.reason : undefined;
      const report = await recover(pool, ring, { values, source, reason, field });
      // Values and originals are stored text: escaped, so none can drive the terminal.
      let refused = 0;
      report.results.forEach((result, index) => {
        if (result.kind === 'recovered') out(printableJson({ value: result.value, field: result.field, original: result.original }));
        else if (result.kind === 'one-way') err(`value ${index + 1} (${printable(result.value)}): hmac values are one-way and no original is kept for them (no vault entry); nothing to recover`);
        else {
          refused += 1;
          err(`value ${index + 1} (${printable(result.value.slice(0, 80))}): refused: ${printable(result.reason)}`);
        }
      });
      err(`recovered ${report.recovered} of ${plural(values.length, 'value')} (audit record ${report.auditId})`);
      // Success means every value that can be recovered was, and at least one was.
      return report.recovered > 0 && refused === 0 ? 0 : 1;
    } finally {
      await pool.end();
    }
  },
};
