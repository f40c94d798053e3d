/**
 * Every setting of login-etl, read once at start-up from flags and environment variables.
 *
 * A flag wins over its environment twin, which wins over the default. Nothing else in the
 * code base reads `process.env`; the composition root passes the parsed config down.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from './errors.js';
import { parsePiiKey, type PiiKey } from './transform/key.js';

/** One setting as the user sees it: a flag, usually an environment twin, a default and help. */
export interface SettingSpec {
  readonly flag: string;
  readonly env?: string;
  readonly type: 'string' | 'boolean';
  readonly default?: string;
  readonly description: string;
}

export const SETTINGS = {
  queueUrl: {
    flag: 'queue-url',
    env: 'SQS_QUEUE_URL',
    type: 'string',
    description: 'URL of the SQS queue to read from (required).',
  },
  region: {
    flag: 'region',
    env: 'AWS_REGION',
    type: 'string',
    default: 'us-east-1',
    description: 'AWS region used to sign requests.',
  },
  sqsEndpoint: {
    flag: 'sqs-endpoint',
    env: 'AWS_ENDPOINT_URL_SQS',
    type: 'string',
    description:
      'Send every SQS request here (LocalStack, an emulator), whatever host the queue URL names. AWS_ENDPOINT_URL is read too.',
  },
  databaseUrl: {
    flag: 'database-url',
    env: 'DATABASE_URL',
    type: 'string',
    description: 'Postgres connection string, postgres://user:pass@host:5432/db (required).',
  },
  piiKeyFile: {
    flag: 'pii-key-file',
    env: 'PII_KEY_FILE',
    type: 'string',
    description: 'File holding the PII key. Alternatively set PII_KEY itself (there is no flag for the key: argv is visible to every user).',
  },
  receiveConcurrency: {
    flag: 'receive-concurrency',
    env: 'LOGIN_ETL_RECEIVE_CONCURRENCY',
    type: 'string',
    default: '4',
    description: 'Receive loops running at once, each with at most one batch in flight (1-64).',
  },
  waitTimeSeconds: {
    flag: 'wait-time-seconds',
    env: 'LOGIN_ETL_WAIT_TIME_SECONDS',
    type: 'string',
    default: '20',
    description: 'Long-poll wait of each ReceiveMessage, in seconds (1-20).',
  },
  pgPoolMax: {
    flag: 'pg-pool-max',
    env: 'LOGIN_ETL_PG_POOL_MAX',
    type: 'string',
    default: '10',
    description: 'Largest number of pooled Postgres connections (1-100).',
  },
  logLevel: {
    flag: 'log-level',
    env: 'LOG_LEVEL',
    type: 'string',
    default: 'info',
    description: 'fatal, error, warn, info, debug, trace or silent.',
  },
  drain: {
    flag: 'drain',
    env: 'LOGIN_ETL_DRAIN',
    type: 'boolean',
    default: 'false',
    description: 'Exit 0 once the queue is empty instead of polling until SIGINT/SIGTERM.',
  },
  visibilityTimeoutSeconds: {
    flag: 'visibility-timeout-seconds',
    env: 'LOGIN_ETL_VISIBILITY_TIMEOUT_SECONDS',
    type: 'string',
    description: "Visibility timeout asked for on each receive (1-43200); by default the queue's own. Batches still being written are extended at half of it.",
  },
  maxInFlightMessages: {
    flag: 'max-in-flight-messages',
    env: 'LOGIN_ETL_MAX_IN_FLIGHT_MESSAGES',
    type: 'string',
    default: '1000',
    description: 'Most messages held at once; receiving pauses at this many (10-100000).',
  },
  maxInFlightBytes: {
    flag: 'max-in-flight-bytes',
    env: 'LOGIN_ETL_MAX_IN_FLIGHT_BYTES',
    type: 'string',
    default: '67108864',
    description: 'Most message bytes held at once; receiving pauses above this (1 MiB to 4 GiB).',
  },
  maxReceiveCount: {
    flag: 'max-receive-count',
    env: 'LOGIN_ETL_MAX_RECEIVE_COUNT',
    type: 'string',
    default: '10',
    description: 'A message received more often than this without being committed is rejected as poison (1-1000).',
  },
  deadLetterQueueUrl: {
    flag: 'dead-letter-queue-url',
    env: 'LOGIN_ETL_DEAD_LETTER_QUEUE_URL',
    type: 'string',
    description: 'Queue that gets every rejected message, body untouched, with the reason as a message attribute.',
  },
  shutdownTimeoutSeconds: {
    flag: 'shutdown-timeout-seconds',
    env: 'LOGIN_ETL_SHUTDOWN_TIMEOUT_SECONDS',
    type: 'string',
    default: '25',
    description: 'After SIGTERM/SIGINT, time to finish batches in flight before handing the rest back to the queue (1-3600).',
  },
  ledgerRetentionSeconds: {
    flag: 'ledger-retention-seconds',
    env: 'LOGIN_ETL_LEDGER_RETENTION_SECONDS',
    type: 'string',
    description: "Age after which ledger rows are pruned; by default the queue's message retention period plus one hour.",
  },
  pruneIntervalSeconds: {
    flag: 'prune-interval-seconds',
    env: 'LOGIN_ETL_PRUNE_INTERVAL_SECONDS',
    type: 'string',
    default: '600',
    description: 'How often the ledger is pruned (10-86400).',
  },
  httpPort: {
    flag: 'http-port',
    env: 'LOGIN_ETL_HTTP_PORT',
    type: 'string',
    default: '8080',
    description: 'Port of the /healthz and /readyz endpoints; 0 turns the HTTP server off.',
  },
  httpHost: {
    flag: 'http-host',
    env: 'LOGIN_ETL_HTTP_HOST',
    type: 'string',
    default: '0.0.0.0',
    description: 'Address the HTTP server listens on.',
  },
  file: {
    flag: 'file',
    type: 'string',
    default: '-',
    description: 'JSON Lines file to send, one message per line; - reads standard input.',
  },
} as const satisfies Record<string, SettingSpec>;

export type SettingName = keyof typeof SETTINGS;

/** Raw values as they came from flags and the environment, before validation. */
export type RawSettings = Partial<Record<SettingName, string | boolean>>;

/** Human name of a setting for error messages: `SQS_QUEUE_URL (--queue-url)`. */
export function settingLabel(name: SettingName): string {
  const spec: SettingSpec = SETTINGS[name];
  return spec.env ? `${spec.env} (--${spec.flag})` : `--${spec.flag}`;
}

/** Merges flags over environment variables over defaults. */
export function collectSettings(
  names: readonly SettingName[],
  flags: Record<string, string | boolean | undefined>,
  env: NodeJS.ProcessEnv,
): RawSettings {
  const raw: RawSettings = {};
  for (const name of names) {
    const spec: SettingSpec = SETTINGS[name];
    const fromFlag = flags[spec.flag];
    let fromEnv = spec.env === undefined ? undefined : env[spec.env];
    if (name === 'sqsEndpoint' && (fromEnv === undefined || fromEnv === '')) fromEnv = env.AWS_ENDPOINT_URL;
    const value = fromFlag ?? (fromEnv === '' ? undefined : fromEnv) ?? spec.default;
    if (value !== undefined) raw[name] = value;
  }
  return raw;
}

const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http or https URL' });

const integer = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, { error: `must be a whole number from ${min} to ${max}` })
    .transform(Number)
    .pipe(z.number().int().min(min, { error: `must be at least ${min}` }).max(max, { error: `must be at most ${max}` }));

const BOOLEAN_TEXT = ['true', 'false', '1', '0', 'yes', 'no'];
const bool = z
  .custom<boolean | string>((v) => typeof v === 'boolean' || (typeof v === 'string' && BOOLEAN_TEXT.includes(v)), {
    error: 'must be true or false',
  })
  .transform((v) => v === true || v === 'true' || v === '1' || v === 'yes');

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const fieldSchemas = {
  queueUrl: httpUrl,
  region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, { error: 'must be an AWS region such as us-east-1' }),
  sqsEndpoint: httpUrl,
  databaseUrl: z
    .string()
    .refine((v) => /^postgres(ql)?:\/\//.test(v) && URL.canParse(v), { error: 'must be a postgres:// or postgresql:// URL' }),
  piiKeyFile: z.string().min(1),
  receiveConcurrency: integer(1, 64),
  waitTimeSeconds: integer(1, 20),
  pgPoolMax: integer(1, 100),
  logLevel: z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` }),
  drain: bool,
  visibilityTimeoutSeconds: integer(1, 43_200),
  maxInFlightMessages: integer(10, 100_000),
  maxInFlightBytes: integer(1_048_576, 4_294_967_296),
  maxReceiveCount: integer(1, 1_000),
  deadLetterQueueUrl: httpUrl,
  shutdownTimeoutSeconds: integer(1, 3_600),
  ledgerRetentionSeconds: integer(60, 31_536_000),
  pruneIntervalSeconds: integer(10, 86_400),
  httpPort: integer(0, 65_535),
  httpHost: z.string().min(1),
  file: z.string().min(1),
} satisfies Record<SettingName, z.ZodType>;

type Field<K extends SettingName> = z.output<(typeof fieldSchemas)[K]>;

/** Validates one setting; on failure throws a ConfigError that names it and never echoes secrets. */
export function parseSetting<K extends SettingName>(name: K, raw: RawSettings, required: boolean): Field<K> | undefined {
  const value = raw[name];
  if (value === undefined) {
    if (required) throw new ConfigError(settingLabel(name), 'is required');
    return undefined;
  }
  const result = fieldSchemas[name].safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    // Connection strings may hold passwords: say what is wrong, never echo the value.
    throw new ConfigError(settingLabel(name), issue?.message ?? 'is invalid');
  }
  return result.data as Field<K>;
}

function required<K extends SettingName>(name: K, raw: RawSettings): Field<K> {
  return parseSetting(name, raw, true) as Field<K>;
}

export type LogLevel = (typeof LOG_LEVELS)[number];

export interface SqsConfig {
  readonly queueUrl: string;
  readonly region: string;
  /** Explicit endpoint for every SQS request, or undefined for the SDK's own resolution. */
  readonly endpoint: string | undefined;
}

export interface RunConfig {
  readonly sqs: SqsConfig;
  readonly databaseUrl: string;
  readonly piiKey: PiiKey;
  readonly receiveConcurrency: number;
  readonly waitTimeSeconds: number;
  readonly pgPoolMax: number;
  readonly logLevel: LogLevel;
  readonly drain: boolean;
  /** Undefined: use the queue's own visibility timeout. */
  readonly visibilityTimeoutSeconds: number | undefined;
  readonly maxInFlightMessages: number;
  readonly maxInFlightBytes: number;
  readonly maxReceiveCount: number;
  readonly deadLetterQueueUrl: string | undefined;
  readonly shutdownTimeoutSeconds: number;
  /** Undefined: the queue's message retention period plus an hour. */
  readonly ledgerRetentionSeconds: number | undefined;
  readonly pruneIntervalSeconds: number;
  /** Undefined: no HTTP server. */
  readonly http: { readonly port: number; readonly host: string } | undefined;
}

export const RUN_SETTINGS = [
  'queueUrl',
  'region',
  'sqsEndpoint',
  'databaseUrl',
  'piiKeyFile',
  'receiveConcurrency',
  'waitTimeSeconds',
  'pgPoolMax',
  'logLevel',
  'drain',
  'visibilityTimeoutSeconds',
  'maxInFlightMessages',
  'maxInFlightBytes',
  'maxReceiveCount',
  'deadLetterQueueUrl',
  'shutdownTimeoutSeconds',
  'ledgerRetentionSeconds',
  'pruneIntervalSeconds',
  'httpPort',
  'httpHost',
] as const satisfies readonly SettingName[];

export const SQS_SETTINGS = ['queueUrl', 'region', 'sqsEndpoint'] as const satisfies readonly SettingName[];

/** The SQS part of a config: queue URL, region and the endpoint every request goes to. */
export function parseSqsConfig(raw: RawSettings): SqsConfig {
  return {
    queueUrl: required('queueUrl', raw),
    region: required('region', raw),
    endpoint: parseSetting('sqsEndpoint', raw, false),
  };
}

/**
 * Reads the PII key from PII_KEY or PII_KEY_FILE. Exactly one must be set when `needed`.
 * The key's value never appears in an error.
 */
export function loadPiiKey(raw: RawSettings, env: NodeJS.ProcessEnv, needed: boolean): PiiKey | undefined {
  const inline = env.PII_KEY === '' ? undefined : env.PII_KEY;
  const file = parseSetting('piiKeyFile', raw, false);
  if (inline !== undefined && file !== undefined) {
    throw new ConfigError('PII_KEY', 'set either PII_KEY or PII_KEY_FILE, not both');
  }
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'unreadable';
      throw new ConfigError(settingLabel('piiKeyFile'), `cannot read the key file (${code})`);
    }
    return parsePiiKey(text.trim(), settingLabel('piiKeyFile'));
  }
  if (inline !== undefined) return parsePiiKey(inline.trim(), 'PII_KEY');
  if (needed) {
    throw new ConfigError('PII_KEY', 'is required: set PII_KEY or PII_KEY_FILE (make one with `login-etl keygen`)');
  }
  return undefined;
}

/** Parses everything `run` needs. Throws ConfigError naming the first bad setting. */
export function parseRunConfig(raw: RawSettings, env: NodeJS.ProcessEnv): RunConfig {
  const sqs = parseSqsConfig(raw);
  const databaseUrl = required('databaseUrl', raw);
  const piiKey = loadPiiKey(raw, env, true) as PiiKey;
  return { sqs, databaseUrl, piiKey, ...parseTuning(raw) };
}

/** A run config with every tunable setting at its default, for the demo and tests. */
export function defaultRunConfig(base: Pick<RunConfig, 'sqs' | 'databaseUrl' | 'piiKey'>): RunConfig {
  return { ...base, ...parseTuning(collectSettings(RUN_SETTINGS, {}, {})) };
}

function parseTuning(raw: RawSettings): Omit<RunConfig, 'sqs' | 'databaseUrl' | 'piiKey'> {
  const httpPort = required('httpPort', raw);
  return {
    receiveConcurrency: required('receiveConcurrency', raw),
    waitTimeSeconds: required('waitTimeSeconds', raw),
    pgPoolMax: required('pgPoolMax', raw),
    logLevel: required('logLevel', raw),
    drain: required('drain', raw),
    visibilityTimeoutSeconds: parseSetting('visibilityTimeoutSeconds', raw, false),
    maxInFlightMessages: required('maxInFlightMessages', raw),
    maxInFlightBytes: required('maxInFlightBytes', raw),
    maxReceiveCount: required('maxReceiveCount', raw),
    deadLetterQueueUrl: parseSetting('deadLetterQueueUrl', raw, false),
    shutdownTimeoutSeconds: required('shutdownTimeoutSeconds', raw),
    ledgerRetentionSeconds: parseSetting('ledgerRetentionSeconds', raw, false),
    pruneIntervalSeconds: required('pruneIntervalSeconds', raw),
    http: httpPort === 0 ? undefined : { port: httpPort, host: required('httpHost', raw) },
  };
}
