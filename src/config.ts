/**
 * Every setting of login-etl, read once at start-up from flags and environment variables, and
 * validated against the settings table (src/settings.ts).
 *
 * A flag wins over its environment twin, which wins over the default. Nothing else in the
 * code base reads `process.env`; the composition root passes the parsed config down.
 */
import { z } from 'zod';
import { ConfigError } from './errors.js';
import { checkKeysFitMode, checkWriterKeys, readKeys, type LoadedKeys } from './keys.js';
import {
  collectSettings,
  OPTIONAL_TUNING,
  RUN_SETTINGS,
  SETTINGS,
  settingLabel,
  TUNING,
  type IntegerRange,
  type IntegerSettingName,
  type RawSettings,
  type SettingName,
  type SettingSpec,
} from './settings.js';
import type { PiiKey } from './transform/key.js';
import { MASK_MODES, type MaskMode } from './transform/mask.js';

export type { LoadedKeys } from './keys.js';
export {
  collectSettings,
  HTTP_SETTINGS,
  KEY_SETTINGS,
  OPTIONAL_TUNING,
  RUN_SETTINGS,
  SETTINGS,
  settingDescription,
  settingLabel,
  settingRange,
  SQS_SETTINGS,
  TUNING,
  type RawSettings,
  type SettingName,
  type SettingSpec,
} from './settings.js';

const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http or https URL' });

/** A whole number within the range the settings table gives it. */
const integer = ({ min, max }: IntegerRange) =>
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

/** How each setting's value is validated; a whole number's range is the settings table's. */
const SCHEMAS = {
  queueUrl: httpUrl,
  region: z.string().regex(AWS_REGION_PATTERN, { error: 'must be an AWS region such as us-east-1' }),
  sqsEndpoint: httpUrl,
  databaseUrl: z
    .string()
    .refine((v) => /^postgres(ql)?:\/\//.test(v) && URL.canParse(v), { error: 'must be a postgres:// or postgresql:// URL' }),
  piiKeyFile: z.string().min(1),
  piiKeysFile: z.string().min(1),
  maskMode: z.enum(MASK_MODES, { error: `must be one of ${MASK_MODES.join(', ')}` }),
  logLevel: z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` }),
  logFormat: z.enum(LOG_FORMATS, { error: `must be one of ${LOG_FORMATS.join(', ')}` }),
  drain: bool,
  deadLetterQueueUrl: httpUrl,
  sqsClient: z.enum(['lean', 'sdk'], { error: 'must be lean or sdk' }),
  metrics: bool,
  httpHost: z.string().min(1),
  file: z.string().min(1),
} satisfies Record<Exclude<SettingName, IntegerSettingName>, z.ZodType>;

/** The validated value of a setting. */
export type SettingValue<K extends SettingName> = K extends IntegerSettingName
  ? number
  : K extends keyof typeof SCHEMAS
    ? z.output<(typeof SCHEMAS)[K]>
    : never;

const integerSchemas = new Map<SettingName, z.ZodType<number, string>>();

function schemaOf(name: SettingName): z.ZodType {
  const range = (SETTINGS[name] as SettingSpec).range;
  if (range === undefined) return SCHEMAS[name as Exclude<SettingName, IntegerSettingName>];
  let schema = integerSchemas.get(name);
  if (schema === undefined) {
    schema = integer(range);
    integerSchemas.set(name, schema);
  }
  return schema;
}

function validate<K extends SettingName>(name: K, value: string | boolean): SettingValue<K> {
  const result = schemaOf(name).safeParse(value);
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
