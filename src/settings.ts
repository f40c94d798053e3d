/**
 * The settings table: each setting once, with its flag, environment variables, default, range
 * and help. Plain data, so that help and argument parsing load nothing else; config.ts holds the
 * rules that validate a value (the range of a whole number comes from here), and the README's
 * table is checked against this one (test/unit/settings-table.test.ts).
 */

/** The allowed values of a whole-number setting, and what they count. */
export interface IntegerRange {
  readonly min: number;
  readonly max: number;
  readonly unit?: 'seconds' | 'milliseconds' | 'bytes';
}

/** One setting as the user sees it: a flag, usually an environment twin, a default and help. */
export interface SettingSpec {
  readonly flag: string;
  readonly env?: string;
  /** Read when `env` is unset or empty: the name other AWS tools use for the same thing. */
  readonly fallbackEnv?: string;
  readonly type: 'string' | 'boolean';
  readonly default?: string;
  /** A whole number within this range. */
  readonly range?: IntegerRange;
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
    // The AWS CLI's name for it; the JavaScript SDK reads only AWS_REGION.
    fallbackEnv: 'AWS_DEFAULT_REGION',
    type: 'string',
    description:
      "AWS region requests are signed for (AWS_DEFAULT_REGION is read too). By default the SDK's (the profile's region, instance metadata), else the one the queue URL names, else us-east-1 for a local endpoint.",
  },
  sqsEndpoint: {
    flag: 'sqs-endpoint',
    env: 'AWS_ENDPOINT_URL_SQS',
    fallbackEnv: 'AWS_ENDPOINT_URL',
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
    range: { min: 1, max: 64 },
    env: 'LOGIN_ETL_RECEIVE_CONCURRENCY',
    type: 'string',
    default: '4',
    description: 'Receive loops (long polls) running at once.',
  },
  waitTimeSeconds: {
    flag: 'wait-time-seconds',
    range: { min: 1, max: 20, unit: 'seconds' },
    env: 'LOGIN_ETL_WAIT_TIME_SECONDS',
    type: 'string',
    default: '20',
    description: 'Long-poll wait of each ReceiveMessage; at most --shutdown-timeout-seconds less 1, so that every poll answers before a shutdown hands messages back.',
  },
  pgPoolMax: {
    flag: 'pg-pool-max',
    range: { min: 1, max: 100 },
    env: 'LOGIN_ETL_PG_POOL_MAX',
    type: 'string',
    default: '10',
    description: 'Largest number of pooled Postgres connections.',
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
    range: { min: 1, max: 43_200, unit: 'seconds' },
    env: 'LOGIN_ETL_VISIBILITY_TIMEOUT_SECONDS',
    type: 'string',
    description: "Visibility timeout asked for on each receive; by default the queue's own. Batches still being written are extended at half of it.",
  },
  maxInFlightMessages: {
    flag: 'max-in-flight-messages',
    range: { min: 10, max: 100_000 },
    env: 'LOGIN_ETL_MAX_IN_FLIGHT_MESSAGES',
    type: 'string',
    default: '1000',
    description: 'Most messages held at once; a receive waits until a full one (10) fits under it.',
  },
  maxInFlightBytes: {
    flag: 'max-in-flight-bytes',
    range: { min: 1_048_576, max: 4_294_967_296, unit: 'bytes' },
    env: 'LOGIN_ETL_MAX_IN_FLIGHT_BYTES',
    type: 'string',
    default: '67108864',
    description: "Most message body bytes held at once; a receive waits until its worst case (10 messages of 1 MiB, SQS's largest; fewer below 10 MiB) fits under it.",
  },
  maxReceiveCount: {
    flag: 'max-receive-count',
    range: { min: 1, max: 1_000 },
    env: 'LOGIN_ETL_MAX_RECEIVE_COUNT',
    type: 'string',
    default: '10',
    description: 'A message received more often than this without being committed is rejected as poison.',
  },
  deadLetterQueueUrl: {
    flag: 'dead-letter-queue-url',
    env: 'LOGIN_ETL_DEAD_LETTER_QUEUE_URL',
    type: 'string',
    description: 'Queue that gets every rejected message, body untouched, with the reason as a message attribute.',
  },
  shutdownTimeoutSeconds: {
    flag: 'shutdown-timeout-seconds',
    range: { min: 1, max: 3_600, unit: 'seconds' },
    env: 'LOGIN_ETL_SHUTDOWN_TIMEOUT_SECONDS',
    type: 'string',
    default: '25',
    description: 'After SIGTERM/SIGINT, time to finish batches in flight before handing the rest back to the queue.',
  },
  unreachableTimeoutSeconds: {
    flag: 'unreachable-timeout-seconds',
    range: { min: 1, max: 86_400, unit: 'seconds' },
    env: 'LOGIN_ETL_UNREACHABLE_TIMEOUT_SECONDS',
    type: 'string',
    default: '60',
    description:
      'With --drain, exit 1 once SQS, Postgres or the dead-letter queue has failed this long without a success, naming it. Without --drain, run keeps retrying and /readyz says why.',
  },
  ledgerRetentionSeconds: {
    flag: 'ledger-retention-seconds',
    range: { min: 60, max: 31_536_000, unit: 'seconds' },
    env: 'LOGIN_ETL_LEDGER_RETENTION_SECONDS',
    type: 'string',
    description: "Age after which ledger rows are pruned; by default the queue's message retention period plus one hour.",
  },
  pruneIntervalSeconds: {
    flag: 'prune-interval-seconds',
    range: { min: 10, max: 86_400, unit: 'seconds' },
    env: 'LOGIN_ETL_PRUNE_INTERVAL_SECONDS',
    type: 'string',
    default: '600',
    description: 'How often the ledger is pruned.',
  },
  statementTimeoutSeconds: {
    flag: 'statement-timeout-seconds',
    env: 'LOGIN_ETL_STATEMENT_TIMEOUT_SECONDS',
    type: 'string',
    default: '60',
    range: { min: 1, max: 3_600, unit: 'seconds' },
    description:
      "Deadline of every SQL statement of run and the Lambda handler, migrations included: Postgres's statement_timeout, and the client gives up 5 s later if no answer came. A batch whose statement runs past it is held and retried.",
  },
  maxBatchMessages: {
    flag: 'max-batch-messages',
    range: { min: 10, max: 10_000 },
    env: 'LOGIN_ETL_MAX_BATCH_MESSAGES',
    type: 'string',
    default: '500',
    description: 'Most messages committed in one transaction; several receives are gathered up to this.',
  },
  flushIntervalMs: {
    flag: 'flush-interval-ms',
    range: { min: 0, max: 10_000, unit: 'milliseconds' },
    env: 'LOGIN_ETL_FLUSH_INTERVAL_MS',
    type: 'string',
    default: '50',
    description: 'Longest a received message waits for others to share its transaction; none once a receive comes back short.',
  },
  writeConcurrency: {
    flag: 'write-concurrency',
    range: { min: 1, max: 32 },
    env: 'LOGIN_ETL_WRITE_CONCURRENCY',
    type: 'string',
    default: '2',
    description: 'Transactions written at once.',
  },
  sqsClient: {
    flag: 'sqs-client',
    env: 'LOGIN_ETL_SQS_CLIENT',
    type: 'string',
    default: 'lean',
    description: 'lean: receive, delete and extend visibility with signed requests over node:http; sdk: the stock AWS SDK client for every call.',
  },
  sqsTimeoutSeconds: {
    flag: 'sqs-timeout-seconds',
    env: 'LOGIN_ETL_SQS_TIMEOUT_SECONDS',
    type: 'string',
    default: '10',
    range: { min: 1, max: 300, unit: 'seconds' },
    description:
      'Deadline of each SQS call (delete, visibility change, queue attributes, dead-letter SendMessageBatch); a receive gets its wait time plus this. A call past it fails as transient and is retried.',
  },
  httpPort: {
    flag: 'http-port',
    range: { min: 0, max: 65_535 },
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

/** The settings whose value is a whole number. */
export type IntegerSettingName = { [K in SettingName]: (typeof SETTINGS)[K] extends { readonly range: IntegerRange } ? K : never }[SettingName];

/** Raw values as they came from flags and the environment, before validation. */
export type RawSettings = Partial<Record<SettingName, string | boolean>>;

/** Human name of a setting for error messages: `SQS_QUEUE_URL (--queue-url)`. */
export function settingLabel(name: SettingName): string {
  const spec: SettingSpec = SETTINGS[name];
  return spec.env ? `${spec.env} (--${spec.flag})` : `--${spec.flag}`;
}

/** The range of a whole-number setting (`1-64`, `1-20 seconds`), or undefined. */
export function settingRange(name: SettingName): string | undefined {
  const range = (SETTINGS[name] as SettingSpec).range;
  return range === undefined ? undefined : `${range.min}-${range.max}${range.unit === undefined ? '' : ` ${range.unit}`}`;
}

/**
 * What --help and the README say about a setting: its description, with the range of a whole
 * number (`Receive loops (long polls) running at once (1-64).`).
 */
export function settingDescription(name: SettingName): string {
  const spec: SettingSpec = SETTINGS[name];
  const range = settingRange(name);
  return range === undefined ? spec.description : `${spec.description.replace(/\.$/, '')} (${range}).`;
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

/** Tuning settings of `run` that always have a value (a default). */
export const TUNING = [
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
  'statementTimeoutSeconds',
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
export const OPTIONAL_TUNING = ['visibilityTimeoutSeconds', 'deadLetterQueueUrl', 'ledgerRetentionSeconds'] as const satisfies readonly SettingName[];

/** The HTTP server's settings; a port of 0 turns it off. */
export const HTTP_SETTINGS = ['httpPort', 'httpHost', 'metrics'] as const satisfies readonly SettingName[];

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
