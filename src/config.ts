/**
 * Every setting of login-etl, read once at start-up from flags and environment variables.
 *
 * A flag wins over its environment twin, which wins over the default. Nothing else in the
 * code base reads `process.env`; the composition root passes the parsed config down.
 */
import { z } from 'zod';
import { ConfigError } from './errors.js';
import { checkKeysFitMode, checkWriterKeys, readKeys, type LoadedKeys } from './keys.js';

export type { LoadedKeys } from './keys.js';
import type { PiiKey } from './transform/key.js';
import { MASK_MODES, type MaskMode } from './transform/mask.js';

/**
 * One setting, the only place it is spelled out: its flag, its environment twin, the schema that
 * validates it (and so its range and unit), its default and its help text. Help output, the
 * README's table (checked by a test) and the run configuration all come from here.
 */
export interface SettingSpec {
  readonly flag: string;
  readonly env?: string;
  /** Read when `env` is unset or empty: the name other AWS tools use for the same thing. */
  readonly fallbackEnv?: string;
  readonly type: 'string' | 'boolean';
  readonly default?: string;
  readonly schema: z.ZodType;
  readonly description: string;
  /** The flag turns the setting off (`--no-metrics` sets `metrics` to false). */
  readonly negates?: true;
}

const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http or https URL' });

/** The range (and unit) of each whole-number setting, for its help text and the README. */
const RANGES = new WeakMap<z.ZodType, string>();

const integer = (min: number, max: number, unit?: 'seconds' | 'milliseconds' | 'bytes') => {
  const schema = z
    .string()
    .regex(/^\d+$/, { error: `must be a whole number from ${min} to ${max}` })
    .transform(Number)
    .pipe(z.number().int().min(min, { error: `must be at least ${min}` }).max(max, { error: `must be at most ${max}` }));
  RANGES.set(schema, `${min}-${max}${unit === undefined ? '' : ` ${unit}`}`);
  return schema;
};

const BOOLEAN_TEXT = ['true', 'false', '1', '0', 'yes', 'no'];
const bool = z
  .custom<boolean | string>((v) => typeof v === 'boolean' || (typeof v === 'string' && BOOLEAN_TEXT.includes(v)), {
    error: 'must be true or false',
  })
  .transform((v) => v === true || v === 'true' || v === '1' || v === 'yes');

const AWS_REGION_PATTERN = /^[a-z]{2}(-[a-z]+)+-\d+$/;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export const SETTINGS = {
  queueUrl: {
    flag: 'queue-url',
    schema: httpUrl,
    env: 'SQS_QUEUE_URL',
    type: 'string',
    description: 'URL of the SQS queue to read from (required).',
  },
  region: {
    flag: 'region',
    schema: z.string().regex(AWS_REGION_PATTERN, { error: 'must be an AWS region such as us-east-1' }),
    env: 'AWS_REGION',
    // The AWS CLI's name for it; the JavaScript SDK reads only AWS_REGION.
    fallbackEnv: 'AWS_DEFAULT_REGION',
    type: 'string',
    description:
      "AWS region requests are signed for (AWS_DEFAULT_REGION is read too). By default the SDK's (the profile's region, instance metadata), else the one the queue URL names, else us-east-1 for a local endpoint.",
  },
  sqsEndpoint: {
    flag: 'sqs-endpoint',
    schema: httpUrl,
    env: 'AWS_ENDPOINT_URL_SQS',
    fallbackEnv: 'AWS_ENDPOINT_URL',
    type: 'string',
    description:
      'Send every SQS request here (LocalStack, an emulator), whatever host the queue URL names. AWS_ENDPOINT_URL is read too.',
  },
  databaseUrl: {
    flag: 'database-url',
    schema: z
    .string()
    .refine((v) => /^postgres(ql)?:\/\//.test(v) && URL.canParse(v), { error: 'must be a postgres:// or postgresql:// URL' }),
    env: 'DATABASE_URL',
    type: 'string',
    description: 'Postgres connection string, postgres://user:pass@host:5432/db (required).',
  },
  piiKeyFile: {
    flag: 'pii-key-file',
    schema: z.string().min(1),
    env: 'PII_KEY_FILE',
    type: 'string',
    description: 'File holding the PII key. Alternatively set PII_KEY itself (there is no flag for the key: argv is visible to every user).',
  },
  piiKeysFile: {
    flag: 'pii-keys-file',
    schema: z.string().min(1),
    env: 'PII_KEYS_FILE',
    type: 'string',
    description: 'JSON or YAML key ring (id, status, secret per key), instead of a single key. Alternatively set PII_KEYS to the JSON itself.',
  },
  maskMode: {
    flag: 'mask-mode',
    schema: z.enum(MASK_MODES, { error: `must be one of ${MASK_MODES.join(', ')}` }),
    env: 'LOGIN_ETL_MASK_MODE',
    type: 'string',
    default: 'hmac',
    description: 'hmac (one-way tokens), siv (deterministic encryption, key holders can decrypt) or vault (hmac tokens, originals sealed for key holders).',
  },
  receiveConcurrency: {
    flag: 'receive-concurrency',
    schema: integer(1, 64),
    env: 'LOGIN_ETL_RECEIVE_CONCURRENCY',
    type: 'string',
    default: '4',
    description: 'Receive loops (long polls) running at once.',
  },
  waitTimeSeconds: {
    flag: 'wait-time-seconds',
    schema: integer(1, 20, 'seconds'),
    env: 'LOGIN_ETL_WAIT_TIME_SECONDS',
    type: 'string',
    default: '20',
    description: 'Long-poll wait of each ReceiveMessage.',
  },
  pgPoolMax: {
    flag: 'pg-pool-max',
    schema: integer(1, 100),
    env: 'LOGIN_ETL_PG_POOL_MAX',
    type: 'string',
    default: '10',
    description: 'Largest number of pooled Postgres connections.',
  },
  logLevel: {
    flag: 'log-level',
    schema: z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` }),
    env: 'LOG_LEVEL',
    type: 'string',
    default: 'info',
    description: 'fatal, error, warn, info, debug, trace or silent. While run --drain shows its progress line on a terminal, warn unless given.',
  },
  logFormat: {
    flag: 'log-format',
    schema: z.enum(LOG_FORMATS, { error: `must be one of ${LOG_FORMATS.join(', ')}` }),
    env: 'LOG_FORMAT',
    type: 'string',
    default: 'auto',
    description: 'json (one JSON object per line), pretty (for people), or auto: pretty when the output is a terminal, json otherwise.',
  },
  drain: {
    flag: 'drain',
    schema: bool,
    env: 'LOGIN_ETL_DRAIN',
    type: 'boolean',
    default: 'false',
    description: 'Exit 0 once the queue is empty instead of polling until SIGINT/SIGTERM.',
  },
  visibilityTimeoutSeconds: {
    flag: 'visibility-timeout-seconds',
    schema: integer(1, 43_200, 'seconds'),
    env: 'LOGIN_ETL_VISIBILITY_TIMEOUT_SECONDS',
    type: 'string',
    description: "Visibility timeout asked for on each receive; by default the queue's own. Batches still being written are extended at half of it.",
  },
  maxInFlightMessages: {
    flag: 'max-in-flight-messages',
    schema: integer(10, 100_000),
    env: 'LOGIN_ETL_MAX_IN_FLIGHT_MESSAGES',
    type: 'string',
    default: '1000',
    description: 'Most messages held at once; receiving pauses at this many.',
  },
  maxInFlightBytes: {
    flag: 'max-in-flight-bytes',
    schema: integer(1_048_576, 4_294_967_296, 'bytes'),
    env: 'LOGIN_ETL_MAX_IN_FLIGHT_BYTES',
    type: 'string',
    default: '67108864',
    description: 'Most message bytes held at once; receiving pauses above this.',
  },
  maxReceiveCount: {
    flag: 'max-receive-count',
    schema: integer(1, 1_000),
    env: 'LOGIN_ETL_MAX_RECEIVE_COUNT',
    type: 'string',
    default: '10',
    description: 'A message received more often than this without being committed is rejected as poison.',
  },
  deadLetterQueueUrl: {
    flag: 'dead-letter-queue-url',
    schema: httpUrl,
    env: 'LOGIN_ETL_DEAD_LETTER_QUEUE_URL',
    type: 'string',
    description: 'Queue that gets every rejected message, body untouched, with the reason as a message attribute.',
  },
  shutdownTimeoutSeconds: {
    flag: 'shutdown-timeout-seconds',
    schema: integer(1, 3_600, 'seconds'),
    env: 'LOGIN_ETL_SHUTDOWN_TIMEOUT_SECONDS',
    type: 'string',
    default: '25',
    description: 'After SIGTERM/SIGINT, time to finish batches in flight before handing the rest back to the queue.',
  },
  unreachableTimeoutSeconds: {
    flag: 'unreachable-timeout-seconds',
    schema: integer(1, 86_400, 'seconds'),
    env: 'LOGIN_ETL_UNREACHABLE_TIMEOUT_SECONDS',
    type: 'string',
    default: '60',
    description:
      'With --drain, exit 1 once SQS, Postgres or the dead-letter queue has failed this long without a success, naming it. Without --drain, run keeps retrying and /readyz says why.',
  },
  ledgerRetentionSeconds: {
    flag: 'ledger-retention-seconds',
    schema: integer(60, 31_536_000, 'seconds'),
    env: 'LOGIN_ETL_LEDGER_RETENTION_SECONDS',
    type: 'string',
    description: "Age after which ledger rows are pruned; by default the queue's message retention period plus one hour.",
  },
  pruneIntervalSeconds: {
    flag: 'prune-interval-seconds',
    schema: integer(10, 86_400, 'seconds'),
    env: 'LOGIN_ETL_PRUNE_INTERVAL_SECONDS',
    type: 'string',
    default: '600',
    description: 'How often the ledger is pruned.',
  },
  maxBatchMessages: {
    flag: 'max-batch-messages',
    schema: integer(10, 10_000),
    env: 'LOGIN_ETL_MAX_BATCH_MESSAGES',
    type: 'string',
    default: '500',
    description: 'Most messages committed in one transaction; several receives are gathered up to this.',
  },
  flushIntervalMs: {
    flag: 'flush-interval-ms',
    schema: integer(0, 10_000, 'milliseconds'),
    env: 'LOGIN_ETL_FLUSH_INTERVAL_MS',
    type: 'string',
    default: '50',
    description: 'Longest a received message waits for others to share its transaction.',
  },
  writeConcurrency: {
    flag: 'write-concurrency',
    schema: integer(1, 32),
    env: 'LOGIN_ETL_WRITE_CONCURRENCY',
    type: 'string',
    default: '2',
    description: 'Transactions written at once.',
  },
  sqsClient: {
    flag: 'sqs-client',
    schema: z.enum(['lean', 'sdk'], { error: 'must be lean or sdk' }),
    env: 'LOGIN_ETL_SQS_CLIENT',
    type: 'string',
    default: 'lean',
    description: 'lean: receive, delete and extend visibility with signed requests over undici; sdk: the stock AWS SDK client for every call.',
  },
  sqsTimeoutSeconds: {
    flag: 'sqs-timeout-seconds',
    env: 'LOGIN_ETL_SQS_TIMEOUT_SECONDS',
    type: 'string',
    default: '10',
    schema: integer(1, 300, 'seconds'),
    description:
      'Deadline of each SQS call (delete, visibility change, queue attributes, dead-letter SendMessageBatch); a receive gets its wait time plus this. A call past it fails as transient and is retried.',
  },
  httpPort: {
    flag: 'http-port',
    schema: integer(0, 65_535),
    env: 'LOGIN_ETL_HTTP_PORT',
    type: 'string',
    default: '8080',
    description: 'Port of the /healthz, /readyz and /metrics endpoints; 0 turns the HTTP server off.',
  },
  metrics: {
    flag: 'no-metrics',
    schema: bool,
    env: 'LOGIN_ETL_METRICS',
    type: 'boolean',
    default: 'true',
    negates: true,
    description: 'Turns off /metrics only (LOGIN_ETL_METRICS=false does the same); /healthz and /readyz stay. Metrics are on by default.',
  },
  httpHost: {
    flag: 'http-host',
    schema: z.string().min(1),
    env: 'LOGIN_ETL_HTTP_HOST',
    type: 'string',
    default: '0.0.0.0',
    description: 'Address the HTTP server listens on.',
  },
  file: {
    flag: 'file',
    schema: z.string().min(1),
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
    const flag = flags[spec.flag];
    const fromFlag = spec.negates === true && flag === true ? 'false' : flag;
    let fromEnv = spec.env === undefined ? undefined : env[spec.env];
    if ((fromEnv === undefined || fromEnv === '') && spec.fallbackEnv !== undefined) fromEnv = env[spec.fallbackEnv];
    const value = fromFlag ?? (fromEnv === '' ? undefined : fromEnv) ?? spec.default;
    if (value !== undefined) raw[name] = value;
  }
  return raw;
}





/** The validated value of a setting. */
export type SettingValue<K extends SettingName> = z.output<(typeof SETTINGS)[K]['schema']>;

/**
 * What --help and the README say about a setting: its description, with the range of a whole
 * number (`Receive loops (long polls) running at once (1-64).`).
 */
export function settingDescription(name: SettingName): string {
  const spec: SettingSpec = SETTINGS[name];
  const range = RANGES.get(spec.schema);
  return range === undefined ? spec.description : `${spec.description.replace(/\.$/, '')} (${range}).`;
}

/** The range of a whole-number setting (`1-64`, `1-20 seconds`), or undefined. */
export function settingRange(name: SettingName): string | undefined {
  return RANGES.get(SETTINGS[name].schema);
}

function validate<K extends SettingName>(name: K, value: string | boolean): SettingValue<K> {
  const result = SETTINGS[name].schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    // Connection strings may hold passwords: say what is wrong, never echo the value.
    throw new ConfigError(settingLabel(name), issue?.message ?? 'is invalid');
  }
  return result.data as SettingValue<K>;
}

/** A setting that must be given (or has a default); throws a ConfigError naming it otherwise. */
export function requiredSetting<K extends SettingName>(name: K, raw: RawSettings): SettingValue<K> {
  const value = raw[name];
  if (value === undefined) throw new ConfigError(settingLabel(name), 'is required');
  return validate(name, value);
}

/** A setting that may be left out: undefined then. */
export function optionalSetting<K extends SettingName>(name: K, raw: RawSettings): SettingValue<K> | undefined {
  const value = raw[name];
  return value === undefined ? undefined : validate(name, value);
}

export type LogLevel = (typeof LOG_LEVELS)[number];

export interface SqsConfig {
  readonly queueUrl: string;
  /**
   * The region given (--region, AWS_REGION, AWS_DEFAULT_REGION), or undefined: then the SDK's
   * own, else the queue URL's, else us-east-1 for a local endpoint (`sqsRegionProvider`).
   */
  readonly region: string | undefined;
  /** Explicit endpoint for every SQS request, or undefined for the SDK's own resolution. */
  readonly endpoint: string | undefined;
}

/** The region a queue URL's host names, and whether that host is AWS's or LocalStack's. */
export interface QueueUrlRegion {
  readonly region: string;
  readonly host: 'aws' | 'localstack';
}

const QUEUE_HOST_REGIONS: readonly [RegExp, QueueUrlRegion['host']][] = [
  [/^sqs(?:-fips)?\.([a-z0-9-]+)\.(?:amazonaws\.com(?:\.cn)?|api\.aws)$/, 'aws'],
  [/^([a-z0-9-]+)\.queue\.amazonaws\.com(?:\.cn)?$/, 'aws'],
  [/^sqs\.([a-z0-9-]+)\.localhost\.localstack\.cloud$/, 'localstack'],
];

/**
 * The region named by a queue URL's host: `sqs.<region>.amazonaws.com` (and `.amazonaws.com.cn`,
 * `sqs.<region>.api.aws`), the legacy `<region>.queue.amazonaws.com` and `queue.amazonaws.com`
 * (us-east-1), or LocalStack's `sqs.<region>.localhost.localstack.cloud`. Undefined for any other.
 */
export function queueUrlRegion(queueUrl: string): QueueUrlRegion | undefined {
  const hostname = URL.canParse(queueUrl) ? new URL(queueUrl).hostname.toLowerCase() : '';
  if (hostname === 'queue.amazonaws.com') return { region: 'us-east-1', host: 'aws' };
  for (const [pattern, host] of QUEUE_HOST_REGIONS) {
    const region = pattern.exec(hostname)?.[1];
    if (region !== undefined && AWS_REGION_PATTERN.test(region)) return { region, host };
  }
  return undefined;
}

/** Tuning settings of `run` that always have a value (a default). */
const TUNING = [
  'receiveConcurrency',
  'waitTimeSeconds',
  'pgPoolMax',
  'logLevel',
  'logFormat',
  'drain',
  'maxInFlightMessages',
  'maxInFlightBytes',
  'maxReceiveCount',
  'shutdownTimeoutSeconds',
  'unreachableTimeoutSeconds',
  'pruneIntervalSeconds',
  'sqsClient',
  'sqsTimeoutSeconds',
  'maxBatchMessages',
  'flushIntervalMs',
  'writeConcurrency',
] as const satisfies readonly SettingName[];

/**
 * Tuning settings of `run` that may be left out: the visibility timeout (then the queue's own),
 * the dead-letter queue (then none) and the ledger retention (then the queue's message retention
 * period plus an hour).
 */
const OPTIONAL_TUNING = ['visibilityTimeoutSeconds', 'deadLetterQueueUrl', 'ledgerRetentionSeconds'] as const satisfies readonly SettingName[];

/** The HTTP server's settings; a port of 0 turns it off. */
const HTTP_SETTINGS = ['httpPort', 'httpHost', 'metrics'] as const satisfies readonly SettingName[];

type Tuning = { readonly [K in (typeof TUNING)[number]]: SettingValue<K> } & {
  readonly [K in (typeof OPTIONAL_TUNING)[number]]: SettingValue<K> | undefined;
};

/** What `run` works with; each tuning field is the setting of the same name in SETTINGS. */
export interface RunConfig extends Tuning {
  readonly sqs: SqsConfig;
  readonly databaseUrl: string;
  /** The active key of the key ring: it masks every new row. */
  readonly piiKey: PiiKey;
  readonly maskMode: MaskMode;
  /** Non-fatal findings about the keys (a key file other users can read), for the log. */
  readonly keyWarnings?: readonly string[];
  /** The setting the keys came from (PII_KEY, PII_KEYS_FILE (--pii-keys-file), ...), for messages. */
  readonly keySource?: string;
  /** Undefined: no HTTP server. */
  readonly http: { readonly port: number; readonly host: string; readonly metrics: boolean } | undefined;
}

export const SQS_SETTINGS = ['queueUrl', 'region', 'sqsEndpoint'] as const satisfies readonly SettingName[];

/** The settings that can hold keys, in the order their conflicts are reported. */
export const KEY_SETTINGS = ['piiKeyFile', 'piiKeysFile'] as const satisfies readonly SettingName[];

export const RUN_SETTINGS = [
  ...SQS_SETTINGS,
  'databaseUrl',
  ...KEY_SETTINGS,
  'maskMode',
  ...TUNING,
  ...OPTIONAL_TUNING,
  ...HTTP_SETTINGS,
] as const satisfies readonly SettingName[];

/**
 * The SQS part of a config: queue URL, region and the endpoint every request goes to. A region
 * given that differs from the one an AWS queue URL names is refused: SQS would refuse every
 * request signed for it.
 */
export function parseSqsConfig(raw: RawSettings): SqsConfig {
  const queueUrl = requiredSetting('queueUrl', raw);
  const region = optionalSetting('region', raw);
  const named = queueUrlRegion(queueUrl);
  if (region !== undefined && named?.host === 'aws' && named.region !== region) {
    throw new ConfigError(
      settingLabel('region'),
      `is ${region}, but ${settingLabel('queueUrl')} names a queue in ${named.region}; requests must be signed for the queue's region: set ${named.region} or leave the region unset (AWS_DEFAULT_REGION counts as set)`,
    );
  }
  return { queueUrl, region, endpoint: optionalSetting('sqsEndpoint', raw) };
}

/** The keys `run`, `check`, `unmask`, `rekey` and the Lambda handler were given, or undefined. */
export function loadKeyRing(raw: RawSettings, env: NodeJS.ProcessEnv): LoadedKeys | undefined {
  return readKeys(
    {
      file: optionalSetting('piiKeyFile', raw),
      fileLabel: settingLabel('piiKeyFile'),
      ringFile: optionalSetting('piiKeysFile', raw),
      ringFileLabel: settingLabel('piiKeysFile'),
    },
    env,
  );
}

/** The keys, which must be given: a ConfigError naming PII_KEY and its alternatives otherwise. */
export function requireKeyRing(raw: RawSettings, env: NodeJS.ProcessEnv): LoadedKeys {
  const keys = loadKeyRing(raw, env);
  if (keys === undefined) {
    throw new ConfigError('PII_KEY', 'is required: set PII_KEY or PII_KEY_FILE, or a key ring in PII_KEYS or PII_KEYS_FILE (make a key with `login-etl keygen`)');
  }
  return keys;
}

/** Checks that the keys suit the mask mode: vault mode needs the active key's public key. */
export function assertKeysFitMode(keys: LoadedKeys, mode: MaskMode): void {
  checkKeysFitMode(keys, mode, settingLabel('maskMode'));
}

/** Checks the keys of a process that writes (`run`, `check`, the Lambda handler); see `checkWriterKeys`. */
export function assertWriterKeys(keys: LoadedKeys, mode: MaskMode): void {
  checkWriterKeys(keys, mode, settingLabel('maskMode'));
}

/** Parses everything `run` needs. Throws ConfigError naming the first bad setting. */
export function parseRunConfig(raw: RawSettings, env: NodeJS.ProcessEnv): RunConfig {
  const sqs = parseSqsConfig(raw);
  const databaseUrl = requiredSetting('databaseUrl', raw);
  const maskMode = requiredSetting('maskMode', raw);
  const keys = requireKeyRing(raw, env);
  assertWriterKeys(keys, maskMode);
  return { sqs, databaseUrl, piiKey: keys.ring.active, maskMode, keyWarnings: keys.warnings, keySource: keys.source, ...parseTuning(raw) };
}

/** A run config with every tunable setting at its default, for the demo and tests. */
export function defaultRunConfig(base: Pick<RunConfig, 'sqs' | 'databaseUrl' | 'piiKey'> & Partial<Pick<RunConfig, 'maskMode'>>): RunConfig {
  return { maskMode: 'hmac', ...base, ...parseTuning(collectSettings(RUN_SETTINGS, {}, {})) };
}

function parseTuning(raw: RawSettings): Tuning & Pick<RunConfig, 'http'> {
  const tuning: Record<string, unknown> = {};
  for (const name of TUNING) tuning[name] = requiredSetting(name, raw);
  for (const name of OPTIONAL_TUNING) tuning[name] = optionalSetting(name, raw);
  const httpPort = requiredSetting('httpPort', raw);
  const http = httpPort === 0 ? undefined : { port: httpPort, host: requiredSetting('httpHost', raw), metrics: requiredSetting('metrics', raw) };
  return { ...(tuning as Tuning), http };
}
