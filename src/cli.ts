#!/usr/bin/env node
/**
 * The command line: turns argv into a command, and failures into exit codes
 * (0 done, 1 failure at run time, 2 bad usage or configuration). No pipeline logic lives here.
 */
import { open, rm, type FileHandle } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import pg from 'pg';
import {
  assertKeysFitMode,
  collectSettings,
  KEY_SETTINGS,
  type LoadedKeys,
  parseRunConfig,
  requiredSetting,
  settingDescription,
  requireKeyRing,
  parseSqsConfig,
  RUN_SETTINGS,
  settingLabel,
  SETTINGS,
  SQS_SETTINGS,
  type SettingName,
  type SettingSpec,
} from './config.js';
import { formatCheck, runChecks } from './check.js';
import { runDemo } from './demo.js';
import { generateSampleEvents } from './embedded/sample-data.js';
import { ConfigError, describeError, UsageError } from './errors.js';
import { createLogger } from './observability/logger.js';
import { printable, printableJson } from './observability/printable.js';
import { plural } from './plural.js';
import { TerminalProgress } from './observability/progress.js';
import { listRejected, printBodies, replayBodies, type Output } from './rejected.js';
import { rekey } from './rekey.js';
import { buildReport, formatReport } from './report.js';
import { runPipeline } from './run.js';
import { QUERY_TIMEOUT_MS, unmask, valuesFromQuery, type UnmaskSource } from './unmask.js';
import { openLines, sendLines } from './send.js';
import { migrate } from './sink/migrate.js';
import { createSqsClient } from './source/sqs.js';
import { generateKeyText, generateVaultKey, KEY_ID_PATTERN } from './transform/key.js';
import { MASK_MODES, PII_FIELDS, type PiiField } from './transform/mask.js';

interface ExtraOption {
  readonly type: 'string' | 'boolean';
  readonly default?: string;
  readonly description: string;
}

/** What a command's --help says about a setting, where the shared description does not fit it. */
interface SettingHelp {
  readonly description: string;
  /** Shown as the default; none is shown when absent. */
  readonly default?: string;
}

interface Command {
  readonly summary: string;
  readonly settings: readonly SettingName[];
  /** Replaces the shared description and default of a setting in this command's --help. */
  readonly settingHelp?: Partial<Record<SettingName, SettingHelp>>;
  readonly extra?: Record<string, ExtraOption>;
  /** Takes operands after the options (unmask's values). */
  readonly positionals?: boolean;
  readonly action: (context: CommandContext) => Promise<number>;
}

interface CommandContext {
  readonly flags: Record<string, string | boolean | undefined>;
  readonly positionals: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  readonly stop: AbortSignal;
}

const out = (line: string) => process.stdout.write(`${line}\n`);
const err = (line: string) => process.stderr.write(`login-etl: ${line}\n`);


/** The key ring of unmask and rekey; findings such as a readable key file go to stderr. */
function keysFor(raw: ReturnType<typeof collectSettings>, env: NodeJS.ProcessEnv): LoadedKeys {
  const keys = requireKeyRing(raw, env);
  for (const warning of keys.warnings) err(`warning: ${warning}`);
  return keys;
}

function wholeNumber(flag: string, value: string | boolean | undefined, min: number, max: number): number {
  const n = Number(value);
  if (typeof value !== 'string' || !/^\d+$/.test(value) || n < min || n > max) {
    throw new ConfigError(`--${flag}`, `must be a whole number from ${min} to ${max}`);
  }
  return n;
}

function timeFlag(flag: string, value: string): Date {
  const time = /^\d{4}-\d{2}-\d{2}/.test(value) ? new Date(value) : new Date(Number.NaN);
  if (Number.isNaN(time.getTime())) throw new ConfigError(`--${flag}`, 'must be an ISO 8601 date or time, such as 2026-11-29 or 2026-11-29T10:00:00Z');
  return time;
}

/** A new file only its owner can read; an existing one is never overwritten. */
async function createPrivateFile(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'wx', 0o600);
  } catch (e: unknown) {
    throw new ConfigError('--out', `cannot create ${path} (${(e as { code?: string }).code ?? 'error'}); it must not exist yet`);
  }
}

/** The demo prints its own summary; log lines would bury it. */
const DEMO_LOG_LEVEL = 'error';

/** What check reads: the queue (through run's SQS client), the database and the keys. It parses run's environment too, as run would. */
const CHECK_SETTINGS = [...SQS_SETTINGS, 'sqsClient', 'sqsTimeoutSeconds', 'databaseUrl', ...KEY_SETTINGS, 'maskMode'] as const satisfies readonly SettingName[];

const COMMANDS: Record<string, Command> = {
  demo: {
    summary: 'Run the pipeline on an embedded SQS emulator and Postgres loaded with sample events.',
    settings: ['logLevel'],
    settingHelp: { logLevel: { description: 'fatal, error, warn, info, debug, trace or silent.', default: DEMO_LOG_LEVEL } },
    extra: {
      keep: { type: 'boolean', description: 'Stay up afterwards and print how to reach the queue and the database.' },
      count: { type: 'string', default: '100', description: 'Sample events to load.' },
      seed: { type: 'string', default: '1', description: 'Seed of the sample data.' },
    },
    async action({ flags, env, stop }) {
      const raw = collectSettings(['logLevel'], { 'log-level': flags['log-level'] ?? (env.LOG_LEVEL || DEMO_LOG_LEVEL) }, {});
      const logLevel = requiredSetting('logLevel', raw);
      const summary = await runDemo({
        count: wholeNumber('count', flags.count, 1, 1_000_000),
        seed: wholeNumber('seed', flags.seed, 0, 2 ** 32 - 1),
        keep: flags.keep === true,
        logLevel,
        stop,
        print: out,
      });
      return summary.written + summary.rejected + summary.duplicates === summary.received ? 0 : 1;
    },
  },
  run: {
    summary: 'Consume the queue into Postgres until SIGINT/SIGTERM (or, with --drain, until it is empty).',
    settings: RUN_SETTINGS,
    async action({ flags, env, stop }) {
      const config = parseRunConfig(collectSettings(RUN_SETTINGS, flags, env), env);
      // A drain on a terminal shows a progress line on stderr instead of a log line per batch:
      // unless a level is asked for, only warnings and errors interrupt it.
      const progress = config.drain && process.stderr.isTTY ? new TerminalProgress(process.stderr) : undefined;
      const levelGiven = flags['log-level'] !== undefined || (env.LOG_LEVEL ?? '') !== '';
      const level = progress !== undefined && !levelGiven ? 'warn' : config.logLevel;
      const log = createLogger(level, 1, {
        format: config.logFormat,
        ...(progress === undefined ? {} : { around: { before: () => progress.clear(), after: () => progress.redraw() } }),
      });
      await runPipeline(config, { log, stop, progress });
      return 0;
    },
  },
  check: {
    summary: 'Verify a run configuration without consuming anything: settings and key, the queue (GetQueueAttributes, through the SQS client run would use), the database and the columns of user_logins. Exit 0 if all pass, 1 if any fails.',
    settings: CHECK_SETTINGS,
    async action({ flags, env }) {
      // Run's other settings come from the environment only here, and a bad one fails check as it would fail run.
      const config = parseRunConfig(collectSettings(RUN_SETTINGS, flags, env), env);
      for (const warning of config.keyWarnings ?? []) err(`warning: ${warning}`);
      const results = await runChecks(config);
      for (const result of results) out(formatCheck(result));
      return results.every((r) => r.ok) ? 0 : 1;
    },
  },
  report: {
    summary: 'Print what analysts ask first: logins per day, per device type and per app version, and the most repeated masked ip and device_id values. Read-only.',
    settings: ['databaseUrl'],
    extra: {
      json: { type: 'boolean', description: 'Print one JSON object instead of tables.' },
      days: { type: 'string', default: '30', description: 'Most recent days in the per-day section (1-3660).' },
      top: { type: 'string', default: '10', description: 'Rows in each of the other sections (1-1000).' },
    },
    async action({ flags, env }) {
      const databaseUrl = requiredSetting('databaseUrl', collectSettings(['databaseUrl'], flags, env));
      const options = { days: wholeNumber('days', flags.days, 1, 3_660), top: wholeNumber('top', flags.top, 1, 1_000) };
      const pool = new pg.Pool({ connectionString: databaseUrl, max: 1, application_name: 'login-etl report' });
      try {
        const report = await buildReport(pool, options);
        if (report === undefined) {
          err('the database has no user_logins yet; run `login-etl run` or `login-etl migrate` first');
          return 1;
        }
        out(flags.json === true ? printableJson(report, 2) : formatReport(report));
        return 0;
      } finally {
        await pool.end();
      }
    },
  },
  send: {
    summary: 'Send one SQS message per line of a JSON Lines file (SendMessageBatch).',
    settings: [...SQS_SETTINGS, 'file'],
    settingHelp: { queueUrl: { description: 'URL of the SQS queue to send to (required).' } },
    async action({ flags, env }) {
      const raw = collectSettings([...SQS_SETTINGS, 'file'], flags, env);
      const sqs = parseSqsConfig(raw);
      const file = requiredSetting('file', raw);
      const input = await openLines(file);
      // Otherwise a person who forgot --file sees nothing happen.
      if (file === '-' && process.stdin.isTTY) err('reading JSON Lines from standard input until end of file (Ctrl-D)');
      const client = createSqsClient(sqs, { maxSockets: 16 });
      try {
        const sent = await sendLines(client, sqs.queueUrl, input);
        out(`sent ${plural(sent, 'message')}`);
      } finally {
        client.destroy();
      }
      return 0;
    },
  },
  migrate: {
    summary: 'Create the login_etl schema and user_logins if missing (run does this too).',
    settings: ['databaseUrl'],
    async action({ flags, env }) {
      const databaseUrl = requiredSetting('databaseUrl', collectSettings(['databaseUrl'], flags, env));
      const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
      try {
        const { applied } = await migrate(pool);
        out(applied.length === 0 ? 'schema is up to date' : `applied ${applied.join(', ')}`);
      } finally {
        await pool.end();
      }
      return 0;
    },
  },
  keygen: {
    summary: 'Print a fresh PII key: for hmac and siv a random 32-byte secret (base64); for vault a key ring entry for the pipeline and one for key holders.',
    settings: [],
    extra: {
      mode: { type: 'string', default: 'hmac', description: 'Masking mode the key is for: hmac, siv or vault.' },
      id: { type: 'string', description: 'Key id of a vault key (1 to 16 letters, digits, . _ -). Default: derived from the secret.' },
    },
    async action({ flags }) {
      const mode = flags.mode;
      if (typeof mode !== 'string' || !(MASK_MODES as readonly string[]).includes(mode)) {
        throw new ConfigError('--mode', `must be one of ${MASK_MODES.join(', ')}`);
      }
      const id = flags.id;
      if (id !== undefined && (typeof id !== 'string' || !KEY_ID_PATTERN.test(id))) {
        throw new ConfigError('--id', 'must be 1 to 16 letters, digits, dots, dashes or underscores');
      }
      if (mode !== 'vault') {
        out(generateKeyText());
        return 0;
      }
      // The pipeline's entry has the public key only; the holder's adds the private key.
      out(JSON.stringify(generateVaultKey(id), null, 2));
      return 0;
    },
  },
  unmask: {
    summary: 'For key holders: print the originals of masked values (arguments, stdin, or --query), as JSON Lines. Each use is recorded in login_etl.unmask_audit first.',
    settings: ['databaseUrl', ...KEY_SETTINGS],
    extra: {
      query: { type: 'string', description: `One SQL statement whose first column holds the values to unmask; run read-only, on its own connection, for at most ${QUERY_TIMEOUT_MS / 1000} s.` },
      field: { type: 'string', description: 'The column the values come from, ip or device_id: siv values decrypt only as their own column. Needed for siv values given as arguments or on stdin, and for a --query whose first column is not user_logins.masked_ip or masked_device_id.' },
      reason: { type: 'string', description: 'Why, for the audit record (login_etl.unmask_audit).' },
    },
    positionals: true,
    async action({ flags, env, positionals }) {
      const raw = collectSettings(['databaseUrl', ...KEY_SETTINGS], flags, env);
      const databaseUrl = requiredSetting('databaseUrl', raw);
      const { ring } = keysFor(raw, env);
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
          for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) if (line.trim() !== '') values.push(line.trim());
          source = 'stdin';
        }
        const reason = typeof flags.reason === 'string' && flags.reason !== '' ? flags.reason : undefined;
        const report = await unmask(pool, ring, { values, source, reason, field });
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
  },
  rejected: {
    summary:
      'Rejected messages: `list` what is kept in clear; for key holders, `show ID...`, `export` or `replay --queue-url URL` the sealed originals. Every opening is recorded in login_etl.unmask_audit.',
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
    async action({ flags, env, positionals }) {
      const [verb, ...ids] = positionals;
      if (verb !== 'list' && verb !== 'show' && verb !== 'export' && verb !== 'replay') {
        throw new UsageError('say what to do: login-etl rejected list | show ID... | export | replay --queue-url URL; see login-etl rejected --help');
      }
      if (verb === 'show' && ids.length === 0) throw new UsageError('rejected show needs message ids (see login-etl rejected list)');
      if (verb === 'list' && ids.length > 0) throw new UsageError('rejected list takes no message ids; choose with --since, --until and --limit');
      if (verb !== 'export' && flags.out !== undefined) throw new UsageError('--out goes with rejected export');
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
      const ring = verb === 'list' ? undefined : keysFor(raw, env).ring;
      const file = verb === 'export' && typeof flags.out === 'string' ? await createPrivateFile(flags.out) : undefined;
      const output: Output = {
        out: async (line) => {
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
  },
  rekey: {
    summary: 'After a key change, rewrite siv or vault values of earlier keys to the active key, in batches, while the pipeline runs.',
    settings: ['databaseUrl', ...KEY_SETTINGS, 'maskMode', 'logLevel', 'logFormat'],
    settingHelp: { maskMode: { description: 'siv or vault, the mode the pipeline masks with (required: hmac values are one-way and cannot be rewritten).' } },
    extra: {
      'batch-size': { type: 'string', default: '1000', description: 'Rows rewritten per transaction (1-100000).' },
    },
    async action({ flags, env }) {
      const names = ['databaseUrl', ...KEY_SETTINGS, 'maskMode', 'logLevel', 'logFormat'] as const;
      const raw = collectSettings(names, flags, env);
      const databaseUrl = requiredSetting('databaseUrl', raw);
      const mode = requiredSetting('maskMode', raw);
      if (mode === 'hmac') {
        throw new ConfigError(settingLabel('maskMode'), 'rekey needs siv or vault: hmac values are one-way and cannot be rewritten');
      }
      const keys = keysFor(raw, env);
      // A key holder: private keys are expected here, so only the fit to the mode is checked.
      assertKeysFitMode(keys, mode);
      const batchSize = wholeNumber('batch-size', flags['batch-size'], 1, 100_000);
      const log = createLogger(requiredSetting('logLevel', raw), 1, { format: requiredSetting('logFormat', raw) });
      const pool = new pg.Pool({ connectionString: databaseUrl, max: 2, application_name: 'login-etl rekey' });
      try {
        await migrate(pool);
        const report = await rekey(pool, keys.ring, { mode, batchSize, log });
        log.info({ ...report, keyId: keys.ring.active.id }, 'rekey done');
        return 0;
      } finally {
        await pool.end();
      }
    },
  },
  generate: {
    summary: 'Print sample login events as JSON Lines, in the shape the pipeline expects.',
    settings: [],
    extra: {
      count: { type: 'string', default: '100', description: 'Events to print.' },
      seed: { type: 'string', default: '1', description: 'Seed of the sample data.' },
    },
    async action({ flags }) {
      const events = generateSampleEvents({
        count: wholeNumber('count', flags.count, 1, 100_000_000),
        seed: wholeNumber('seed', flags.seed, 0, 2 ** 32 - 1),
      });
      for (const event of events) out(event.body);
      return 0;
    },
  },
};

function optionsOf(command: Command): NonNullable<ParseArgsConfig['options']> {
  const options: NonNullable<ParseArgsConfig['options']> = { help: { type: 'boolean', short: 'h' } };
  for (const name of command.settings) options[SETTINGS[name].flag] = { type: SETTINGS[name].type };
  for (const [flag, spec] of Object.entries(command.extra ?? {})) {
    options[flag] = spec.default === undefined ? { type: spec.type } : { type: spec.type, default: spec.default };
  }
  return options;
}

function help(name?: string): string {
  if (name === undefined || COMMANDS[name] === undefined) {
    const lines = ['Usage: login-etl <command> [options]', '', 'Commands:'];
    for (const [commandName, command] of Object.entries(COMMANDS)) lines.push(`  ${commandName.padEnd(9)} ${command.summary}`);
    lines.push('', 'login-etl <command> --help lists the options of a command.');
    lines.push('Exit codes: 0 done, 1 failure at run time, 2 bad usage or configuration.');
    return lines.join('\n');
  }
  const command = COMMANDS[name];
  const rows: [string, string, string][] = command.settings.map((setting) => {
    const spec: SettingSpec = SETTINGS[setting];
    const flag = `--${spec.flag}${spec.type === 'string' ? ' <value>' : ''}`;
    const env = spec.env ? `env ${spec.env}` : '';
    // A negated flag's default is the setting's, not the flag's: its description says it.
    const { description, default: shown } = command.settingHelp?.[setting] ?? { description: settingDescription(setting), default: spec.negates === true ? undefined : spec.default };
    return [flag, env, `${description}${shown === undefined ? '' : ` Default: ${shown}.`}`];
  });
  for (const [flag, spec] of Object.entries(command.extra ?? {})) {
    rows.push([`--${flag}${spec.type === 'string' ? ' <value>' : ''}`, '', `${spec.description}${spec.default === undefined ? '' : ` Default: ${spec.default}.`}`]);
  }
  const flagWidth = Math.max(0, ...rows.map((r) => r[0].length));
  const envWidth = Math.max(0, ...rows.map((r) => r[1].length));
  const lines = [`Usage: login-etl ${name} [options]`, '', command.summary, ''];
  if (command.settings.includes('queueUrl') || name === 'run') {
    lines.push('AWS credentials come from the standard chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, roles).', '');
  }
  if (name === 'run' || name === 'check' || name === 'unmask' || name === 'rekey' || name === 'rejected') {
    lines.push('PII_KEY (env only) holds the masking key, PII_KEYS (env only) a key ring as JSON; or point PII_KEY_FILE or PII_KEYS_FILE at a file.', '');
  }
  lines.push('Options:');
  for (const [flag, env, description] of rows) lines.push(`  ${flag.padEnd(flagWidth)}  ${env.padEnd(envWidth)}  ${description}`);
  lines.push(`  ${'-h, --help'.padEnd(flagWidth)}  ${''.padEnd(envWidth)}  Show this help.`);
  return lines.join('\n');
}

/** Runs the CLI and resolves with the exit code. */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv, stop: AbortSignal): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    out(help(rest[0]));
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  try {
    if (command === undefined) throw new UsageError(`unknown command '${name}'; see login-etl --help`);
    let flags: Record<string, string | boolean | undefined>;
    let positionals: string[];
    try {
      const parsed = parseArgs({ args: [...rest], options: optionsOf(command), strict: true, allowPositionals: command.positionals === true });
      flags = parsed.values as typeof flags;
      positionals = parsed.positionals;
    } catch (err) {
      // Node's own text for an unknown option suggests `--` for positionals, which misleads here.
      const unknownOption = err instanceof Error && (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /'([^']*)'/.exec(err.message)?.[1] : undefined;
      const message = unknownOption === undefined ? (err instanceof Error ? err.message : String(err)) : `unknown option '${unknownOption}'`;
      throw new UsageError(`${message}; see login-etl ${name} --help`);
    }
    if (flags.help === true) {
      out(help(name));
      return 0;
    }
    return await command.action({ flags, positionals, env, stop });
  } catch (err) {
    if (err instanceof ConfigError || err instanceof UsageError) {
      process.stderr.write(`login-etl: ${printable(err.message)}\n`);
      return 2;
    }
    // Postgres's messages can quote stored text (and the user's own SQL): escaped like any output.
    process.stderr.write(`login-etl: ${printable(describeError(err))}\n`);
    return 1;
  }
}

function installSignalHandlers(controller: AbortController): void {
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals === 1) {
      process.stderr.write(`login-etl: ${signal} received; finishing batches in flight (send it again to force)\n`);
      controller.abort();
    } else {
      // Forced exit: uncommitted messages stay in the queue and the ledger skips committed ones.
      process.stderr.write(`login-etl: ${signal} received again; exiting now\n`);
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

const controller = new AbortController();
installSignalHandlers(controller);
main(process.argv.slice(2), process.env, controller.signal).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`login-etl: ${printable(describeError(err))}\n`);
    process.exit(1);
  },
);
