/**
 * Every setting of login-etl, read once at start-up from flags and environment variables.
 *
 * A flag wins over its environment twin, which wins over the default. Nothing else in the
 * code base reads `process.env`; the composition root passes the parsed config down.
 */
import { readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from './errors.js';
import { collectSettings, KEY_SETTINGS, RUN_SETTINGS, SETTINGS, settingLabel, type RawSettings, type SettingName } from './settings.js';

export { collectSettings, KEY_SETTINGS, RUN_SETTINGS, SETTINGS, settingLabel, SQS_SETTINGS, type RawSettings, type SettingName, type SettingSpec } from './settings.js';
import { KeyRing, parseKeyRing, parsePiiKey, type PiiKey } from './transform/key.js';
import { MASK_MODES, type MaskMode } from './transform/mask.js';

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
  /** Undefined: no HTTP server. */
  readonly http: { readonly port: number; readonly host: string; readonly metrics: boolean } | undefined;
  readonly sqsClient: 'lean' | 'sdk';
  readonly maxBatchMessages: number;
  readonly flushIntervalMs: number;
  readonly writeConcurrency: number;
}



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
    http: httpPort === 0 ? undefined : { port: httpPort, host: required('httpHost', raw), metrics: required('metrics', raw) },
    sqsClient: required('sqsClient', raw),
    maxBatchMessages: required('maxBatchMessages', raw),
    flushIntervalMs: required('flushIntervalMs', raw),
    writeConcurrency: required('writeConcurrency', raw),
  };
}
