/**
 * Every setting of login-etl, read once at start-up from flags and environment variables.
 *
 * A flag wins over its environment twin, which wins over the default. Nothing else in the
 * code base reads `process.env`; the composition root passes the parsed config down.
 */
import { readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from './errors.js';
import { KeyRing, parseKeyRing, parsePiiKey, type PiiKey } from './transform/key.js';
import { MASK_MODES, type MaskMode } from './transform/mask.js';

/** One setting as the user sees it: a flag, usually an environment twin, a default and help. */
export interface SettingSpec {
  readonly flag: string;
  readonly env?: string;
  readonly type: 'string' | 'boolean';
  readonly default?: string;
  readonly description: string;
  /** The flag turns the setting off (`--no-metrics` sets `metrics` to false). */
  readonly negates?: true;
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
    description:
      "AWS region requests are signed for (AWS_DEFAULT_REGION is read too). By default the SDK's (the profile's region, instance metadata), else the one the queue URL names, else us-east-1 for a local endpoint.",
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
  piiKeysFile: {
    flag: 'pii-keys-file',
    env: 'PII_KEYS_FILE',
    type: 'string',
    description: 'JSON or YAML key ring (id, status, secret per key), instead of a single key. Alternatively set PII_KEYS to the JSON itself.',
  },
  maskMode: {
    flag: 'mask-mode',
    env: 'LOGIN_ETL_MASK_MODE',
    type: 'string',
    default: 'hmac',
    description: 'hmac (one-way tokens), siv (deterministic encryption, key holders can decrypt) or vault (hmac tokens, originals sealed for key holders).',
  },
  receiveConcurrency: {
    flag: 'receive-concurrency',
    env: 'LOGIN_ETL_RECEIVE_CONCURRENCY',
    type: 'string',
    default: '4',
    description: 'Receive loops (long polls) running at once (1-64).',
  },
  waitTimeSeconds: {
    flag: 'wait-time-seconds',
    env: 'LOGIN_ETL_WAIT_TIME_SECONDS',
    type: 'string',
    default: '20',
    description: 'Long-poll wait of each ReceiveMessage, in seconds (1-20); at most --shutdown-timeout-seconds less 1, so that every poll answers before a shutdown hands messages back.',
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
    description: 'fatal, error, warn, info, debug, trace or silent. While run --drain shows its progress line on a terminal, warn unless given.',
  },
  logFormat: {
    flag: 'log-format',
    env: 'LOG_FORMAT',
    type: 'string',
    default: 'auto',
    description: 'json (one JSON object per line), pretty (for people), or auto: pretty when the output is a terminal, json otherwise.',
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
    description: 'Most messages held at once; a receive waits until a full one (10) fits under it (10-100000).',
  },
  maxInFlightBytes: {
    flag: 'max-in-flight-bytes',
    env: 'LOGIN_ETL_MAX_IN_FLIGHT_BYTES',
    type: 'string',
    default: '67108864',
    description: "Most message body bytes held at once; a receive waits until its worst case (10 messages of 1 MiB, SQS's largest; fewer below 10 MiB) fits under it (1 MiB to 4 GiB).",
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
  unreachableTimeoutSeconds: {
    flag: 'unreachable-timeout-seconds',
    env: 'LOGIN_ETL_UNREACHABLE_TIMEOUT_SECONDS',
    type: 'string',
    default: '60',
    description:
      'With --drain, exit 1 once SQS, Postgres or the dead-letter queue has failed this long without a success, naming it (1-86400). Without --drain, run keeps retrying and /readyz says why.',
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
  statementTimeoutSeconds: {
    flag: 'statement-timeout-seconds',
    env: 'LOGIN_ETL_STATEMENT_TIMEOUT_SECONDS',
    type: 'string',
    default: '60',
    description:
      "Deadline of every SQL statement of run and the Lambda handler, migrations included (1-3600): Postgres's statement_timeout, and the client gives up 5 s later if no answer came. A batch whose statement runs past it is held and retried.",
  },
  maxBatchMessages: {
    flag: 'max-batch-messages',
    env: 'LOGIN_ETL_MAX_BATCH_MESSAGES',
    type: 'string',
    default: '500',
    description: 'Most messages committed in one transaction; several receives are gathered up to this (10-10000).',
  },
  flushIntervalMs: {
    flag: 'flush-interval-ms',
    env: 'LOGIN_ETL_FLUSH_INTERVAL_MS',
    type: 'string',
    default: '50',
    description: 'Longest a received message waits for others to share its transaction, in milliseconds (0-10000).',
  },
  writeConcurrency: {
    flag: 'write-concurrency',
    env: 'LOGIN_ETL_WRITE_CONCURRENCY',
    type: 'string',
    default: '2',
    description: 'Transactions written at once (1-32).',
  },
  sqsClient: {
    flag: 'sqs-client',
    env: 'LOGIN_ETL_SQS_CLIENT',
    type: 'string',
    default: 'lean',
    description: 'lean: receive, delete and extend visibility with signed requests over undici; sdk: the stock AWS SDK client for every call.',
  },
  httpPort: {
    flag: 'http-port',
    env: 'LOGIN_ETL_HTTP_PORT',
    type: 'string',
    default: '8080',
    description: 'Port of the /healthz, /readyz and /metrics endpoints; 0 turns the HTTP server off.',
  },
  metrics: {
    flag: 'no-metrics',
    env: 'LOGIN_ETL_METRICS',
    type: 'boolean',
    default: 'true',
    negates: true,
    description: 'Turns off /metrics only (LOGIN_ETL_METRICS=false does the same); /healthz and /readyz stay. Metrics are on by default.',
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
    const flag = flags[spec.flag];
    const fromFlag = spec.negates === true && flag === true ? 'false' : flag;
    let fromEnv = spec.env === undefined ? undefined : env[spec.env];
    if (name === 'sqsEndpoint' && (fromEnv === undefined || fromEnv === '')) fromEnv = env.AWS_ENDPOINT_URL;
    // The AWS CLI's name for it; the JavaScript SDK reads only AWS_REGION.
    if (name === 'region' && (fromEnv === undefined || fromEnv === '')) fromEnv = env.AWS_DEFAULT_REGION;
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

const AWS_REGION_PATTERN = /^[a-z]{2}(-[a-z]+)+-\d+$/;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

const fieldSchemas = {
  queueUrl: httpUrl,
  region: z.string().regex(AWS_REGION_PATTERN, { error: 'must be an AWS region such as us-east-1' }),
  sqsEndpoint: httpUrl,
  databaseUrl: z
    .string()
    .refine((v) => /^postgres(ql)?:\/\//.test(v) && URL.canParse(v), { error: 'must be a postgres:// or postgresql:// URL' }),
  piiKeyFile: z.string().min(1),
  piiKeysFile: z.string().min(1),
  maskMode: z.enum(MASK_MODES, { error: `must be one of ${MASK_MODES.join(', ')}` }),
  receiveConcurrency: integer(1, 64),
  waitTimeSeconds: integer(1, 20),
  pgPoolMax: integer(1, 100),
  logLevel: z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` }),
  logFormat: z.enum(LOG_FORMATS, { error: `must be one of ${LOG_FORMATS.join(', ')}` }),
  drain: bool,
  visibilityTimeoutSeconds: integer(1, 43_200),
  maxInFlightMessages: integer(10, 100_000),
  maxInFlightBytes: integer(1_048_576, 4_294_967_296),
  maxReceiveCount: integer(1, 1_000),
  deadLetterQueueUrl: httpUrl,
  shutdownTimeoutSeconds: integer(1, 3_600),
  unreachableTimeoutSeconds: integer(1, 86_400),
  ledgerRetentionSeconds: integer(60, 31_536_000),
  pruneIntervalSeconds: integer(10, 86_400),
  statementTimeoutSeconds: integer(1, 3_600),
  maxBatchMessages: integer(10, 10_000),
  flushIntervalMs: integer(0, 10_000),
  writeConcurrency: integer(1, 32),
  sqsClient: z.enum(['lean', 'sdk'], { error: 'must be lean or sdk' }),
  httpPort: integer(0, 65_535),
  httpHost: z.string().min(1),
  metrics: bool,
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

export interface RunConfig {
  readonly sqs: SqsConfig;
  readonly databaseUrl: string;
  /** The active key of the key ring: it masks every new row. */
  readonly piiKey: PiiKey;
  readonly maskMode: MaskMode;
  /** Non-fatal findings about the keys (a key file other users can read), for the log. */
  readonly keyWarnings?: readonly string[];
  /** The setting the keys came from (PII_KEY, PII_KEYS_FILE (--pii-keys-file), ...), for messages. */
  readonly keySource?: string;
  readonly receiveConcurrency: number;
  readonly waitTimeSeconds: number;
  readonly pgPoolMax: number;
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
  readonly drain: boolean;
  /** Undefined: use the queue's own visibility timeout. */
  readonly visibilityTimeoutSeconds: number | undefined;
  readonly maxInFlightMessages: number;
  readonly maxInFlightBytes: number;
  readonly maxReceiveCount: number;
  readonly deadLetterQueueUrl: string | undefined;
  readonly shutdownTimeoutSeconds: number;
  /** A drain exits 1 once a dependency has failed this long without a success. */
  readonly unreachableTimeoutSeconds: number;
  /** Undefined: the queue's message retention period plus an hour. */
  readonly ledgerRetentionSeconds: number | undefined;
  readonly pruneIntervalSeconds: number;
  /** Deadline of every SQL statement, on the server and (5 s later) on the client. */
  readonly statementTimeoutSeconds: number;
  /** Undefined: no HTTP server. */
  readonly http: { readonly port: number; readonly host: string; readonly metrics: boolean } | undefined;
  readonly sqsClient: 'lean' | 'sdk';
  readonly maxBatchMessages: number;
  readonly flushIntervalMs: number;
  readonly writeConcurrency: number;
}

export const RUN_SETTINGS = [
  'queueUrl',
  'region',
  'sqsEndpoint',
  'databaseUrl',
  'piiKeyFile',
  'piiKeysFile',
  'maskMode',
  'receiveConcurrency',
  'waitTimeSeconds',
  'pgPoolMax',
  'logLevel',
  'logFormat',
  'drain',
  'visibilityTimeoutSeconds',
  'maxInFlightMessages',
  'maxInFlightBytes',
  'maxReceiveCount',
  'deadLetterQueueUrl',
  'shutdownTimeoutSeconds',
  'unreachableTimeoutSeconds',
  'ledgerRetentionSeconds',
  'pruneIntervalSeconds',
  'statementTimeoutSeconds',
  'httpPort',
  'httpHost',
  'sqsClient',
  'maxBatchMessages',
  'flushIntervalMs',
  'writeConcurrency',
  'metrics',
] as const satisfies readonly SettingName[];

export const SQS_SETTINGS = ['queueUrl', 'region', 'sqsEndpoint'] as const satisfies readonly SettingName[];

/**
 * The SQS part of a config: queue URL, region and the endpoint every request goes to. A region
 * given that differs from the one an AWS queue URL names is refused: SQS would refuse every
 * request signed for it.
 */
export function parseSqsConfig(raw: RawSettings): SqsConfig {
  const queueUrl = required('queueUrl', raw);
  const region = parseSetting('region', raw, false);
  const named = queueUrlRegion(queueUrl);
  if (region !== undefined && named?.host === 'aws' && named.region !== region) {
    throw new ConfigError(
      settingLabel('region'),
      `is ${region}, but ${settingLabel('queueUrl')} names a queue in ${named.region}; requests must be signed for the queue's region: set ${named.region} or leave the region unset (AWS_DEFAULT_REGION counts as set)`,
    );
  }
  return { queueUrl, region, endpoint: parseSetting('sqsEndpoint', raw, false) };
}

/** The settings that can hold keys, in the order their conflicts are reported. */
export const KEY_SETTINGS = ['piiKeyFile', 'piiKeysFile'] as const satisfies readonly SettingName[];

export interface LoadedKeys {
  readonly ring: KeyRing;
  /** The setting the keys came from, for messages. */
  readonly source: string;
  /** Non-fatal findings, such as a key file other users can read. */
  readonly warnings: readonly string[];
}

function readKeyFile(file: string, label: string, warnings: string[]): string {
  try {
    const { mode } = statSync(file);
    // A secret that other local users can read is not secret; warn rather than refuse, since
    // some secret mounts (Kubernetes, Docker) set their own modes.
    if ((mode & 0o077) !== 0) {
      warnings.push(`${label}: the key file can be read by other users (mode ${(mode & 0o777).toString(8)}); chmod 600 it`);
    }
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as { code?: string }).code ?? 'unreadable';
    throw new ConfigError(label, `cannot read the key file (${code})`);
  }
}

/**
 * Reads the keys from exactly one of PII_KEY, PII_KEY_FILE (one key, its id derived from it, so
 * masked values stay as they were), PII_KEYS or PII_KEYS_FILE (a key ring). Values never appear
 * in an error. Returns undefined when nothing is set and `needed` is false.
 */
export function loadKeyRing(raw: RawSettings, env: NodeJS.ProcessEnv, needed: boolean): LoadedKeys | undefined {
  const inline = env.PII_KEY === '' ? undefined : env.PII_KEY;
  const inlineRing = env.PII_KEYS === '' ? undefined : env.PII_KEYS;
  const file = parseSetting('piiKeyFile', raw, false);
  const ringFile = parseSetting('piiKeysFile', raw, false);
  const given = [
    inline === undefined ? undefined : 'PII_KEY',
    file === undefined ? undefined : 'PII_KEY_FILE',
    inlineRing === undefined ? undefined : 'PII_KEYS',
    ringFile === undefined ? undefined : 'PII_KEYS_FILE',
  ].filter((n) => n !== undefined);
  if (given.length > 1) {
    throw new ConfigError(given[0] as string, `set only one of PII_KEY, PII_KEY_FILE, PII_KEYS and PII_KEYS_FILE, not ${given.join(' and ')}`);
  }
  const warnings: string[] = [];
  if (file !== undefined) {
    const label = settingLabel('piiKeyFile');
    const key = parsePiiKey(readKeyFile(file, label, warnings).trim(), label);
    return { ring: new KeyRing([key], label), source: label, warnings };
  }
  if (inline !== undefined) return { ring: new KeyRing([parsePiiKey(inline.trim(), 'PII_KEY')], 'PII_KEY'), source: 'PII_KEY', warnings };
  if (ringFile !== undefined) {
    const label = settingLabel('piiKeysFile');
    return { ring: parseKeyRing(readKeyFile(ringFile, label, warnings), label), source: label, warnings };
  }
  if (inlineRing !== undefined) return { ring: parseKeyRing(inlineRing, 'PII_KEYS'), source: 'PII_KEYS', warnings };
  if (needed) {
    throw new ConfigError('PII_KEY', 'is required: set PII_KEY or PII_KEY_FILE, or a key ring in PII_KEYS or PII_KEYS_FILE (make a key with `login-etl keygen`)');
  }
  return undefined;
}

/** Checks that the keys suit the mask mode: vault mode needs the active key's public key. */
export function assertKeysFitMode(keys: LoadedKeys, mode: MaskMode): void {
  if (mode !== 'vault') return;
  if (keys.ring.active.publicKey === undefined) {
    throw new ConfigError(settingLabel('maskMode'), `vault needs a key ring (PII_KEYS_FILE or PII_KEYS) whose active key has a public_key; make one with \`login-etl keygen --mode vault\``);
  }
}

/**
 * Checks the keys of a process that writes (`run`, `check`, the Lambda handler): they suit the
 * mode, and the ring holds no vault private key, whatever the mode. A private key opens every
 * original in login_etl.pii_vault and the writer never needs one; in hmac or siv mode it would
 * sit there unused until someone switched the mode to vault. Key holders (`unmask`, `rekey`)
 * do not call this.
 */
export function assertWriterKeys(keys: LoadedKeys, mode: MaskMode): void {
  const holder = keys.ring.keys.find((k) => k.hasPrivateKey);
  if (holder !== undefined) {
    throw new ConfigError(
      keys.source,
      `holds a vault private_key (key '${holder.id}'); run, check and the Lambda handler must hold only public keys, in every mask mode (private keys are for unmask and rekey)`,
    );
  }
  assertKeysFitMode(keys, mode);
}

/** Parses everything `run` needs. Throws ConfigError naming the first bad setting. */
export function parseRunConfig(raw: RawSettings, env: NodeJS.ProcessEnv): RunConfig {
  const sqs = parseSqsConfig(raw);
  const databaseUrl = required('databaseUrl', raw);
  const maskMode = required('maskMode', raw);
  const keys = loadKeyRing(raw, env, true) as LoadedKeys;
  assertWriterKeys(keys, maskMode);
  return { sqs, databaseUrl, piiKey: keys.ring.active, maskMode, keyWarnings: keys.warnings, keySource: keys.source, ...parseTuning(raw) };
}

/** A run config with every tunable setting at its default, for the demo and tests. */
export function defaultRunConfig(base: Pick<RunConfig, 'sqs' | 'databaseUrl' | 'piiKey'> & Partial<Pick<RunConfig, 'maskMode'>>): RunConfig {
  return { maskMode: 'hmac', ...base, ...parseTuning(collectSettings(RUN_SETTINGS, {}, {})) };
}

function parseTuning(raw: RawSettings): Omit<RunConfig, 'sqs' | 'databaseUrl' | 'piiKey' | 'maskMode' | 'keyWarnings' | 'keySource'> {
  const httpPort = required('httpPort', raw);
  return {
    receiveConcurrency: required('receiveConcurrency', raw),
    waitTimeSeconds: required('waitTimeSeconds', raw),
    pgPoolMax: required('pgPoolMax', raw),
    logLevel: required('logLevel', raw),
    logFormat: required('logFormat', raw),
    drain: required('drain', raw),
    visibilityTimeoutSeconds: parseSetting('visibilityTimeoutSeconds', raw, false),
    maxInFlightMessages: required('maxInFlightMessages', raw),
    maxInFlightBytes: required('maxInFlightBytes', raw),
    maxReceiveCount: required('maxReceiveCount', raw),
    deadLetterQueueUrl: parseSetting('deadLetterQueueUrl', raw, false),
    shutdownTimeoutSeconds: required('shutdownTimeoutSeconds', raw),
    unreachableTimeoutSeconds: required('unreachableTimeoutSeconds', raw),
    ledgerRetentionSeconds: parseSetting('ledgerRetentionSeconds', raw, false),
    pruneIntervalSeconds: required('pruneIntervalSeconds', raw),
    statementTimeoutSeconds: required('statementTimeoutSeconds', raw),
    http: httpPort === 0 ? undefined : { port: httpPort, host: required('httpHost', raw), metrics: required('metrics', raw) },
    sqsClient: required('sqsClient', raw),
    maxBatchMessages: required('maxBatchMessages', raw),
    flushIntervalMs: required('flushIntervalMs', raw),
    writeConcurrency: required('writeConcurrency', raw),
  };
}
