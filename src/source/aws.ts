/**
 * Where SQS requests go and how they are signed, for both SQS clients (the lean one and the
 * SDK's): the endpoint, the region and the credentials. Nothing here loads the SQS client of
 * the SDK, so a process that reads the queue through the lean client never loads it.
 */
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import type { AwsCredentialIdentityProvider } from '@smithy/types';
import ipaddr from 'ipaddr.js';
import { queueUrlRegion, settingLabel, type SqsConfig } from '../config.js';
import { ConfigError } from '../errors.js';

const AWS_HOST = /(^|\.)amazonaws\.com(\.cn)?$|(^|\.)api\.aws$/;

/**
 * The endpoint every request must go to. An explicit endpoint always wins: newer LocalStack and
 * emulators hand out queue URLs whose hosts do not resolve. Without one, a queue URL that is
 * not on an AWS host (LocalStack's `http://localhost:4566/000000000000/q`) is its own endpoint,
 * and an AWS queue URL is left to the SDK's own endpoint resolution.
 */
export function resolveSqsEndpoint(config: SqsConfig): string | undefined {
  if (config.endpoint !== undefined) return config.endpoint;
  const url = new URL(config.queueUrl);
  return AWS_HOST.test(url.hostname) ? undefined : url.origin;
}

/** The host a URL names, as a socket connects to it: an IPv6 address without its brackets. */
export function connectHost(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}

/**
 * Whether an endpoint reaches only this machine or a LocalStack: a loopback address (127.0.0.0/8,
 * ::1), `localhost` and its subdomains, LocalStack's Compose service name `localstack`, or
 * `localhost.localstack.cloud` and its subdomains (public names for 127.0.0.1).
 */
export function isLocalEndpoint(endpoint: string): boolean {
  const host = connectHost(new URL(endpoint)).toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost') || host === 'localstack') return true;
  if (host === 'localhost.localstack.cloud' || host.endsWith('.localhost.localstack.cloud')) return true;
  return ipaddr.isValid(host) && ipaddr.process(host).range() === 'loopback';
}

/** Looks up the region the SDK would use on its own (AWS profile, instance metadata); undefined if none. */
export type RegionLookup = () => Promise<string | undefined>;

/**
 * The SDK's own region chain, as a client given no region resolves it (AWS_REGION, the AWS
 * profile, instance metadata), read with the SDK's own loader and selectors, and resolved as the
 * client resolves it: a FIPS pseudo-region (`fips-us-gov-west-1`, `us-east-1-fips`) is the region
 * it names, the one requests are signed for and a queue URL names.
 */
export async function sdkRegion(): Promise<string | undefined> {
  const { loadConfig, resolveRegionConfig, NODE_REGION_CONFIG_OPTIONS, NODE_REGION_CONFIG_FILE_OPTIONS } = await import('@smithy/core/config');
  try {
    return await resolveRegionConfig({ region: loadConfig(NODE_REGION_CONFIG_OPTIONS, NODE_REGION_CONFIG_FILE_OPTIONS) }).region();
  } catch {
    return undefined;
  }
}

/**
 * The region requests are signed for: the one given (--region, AWS_REGION, AWS_DEFAULT_REGION);
 * else the SDK's own (`fromSdk`); else the one the queue URL names; else us-east-1 when every
 * request goes to a local endpoint. An SDK region that differs from the one an AWS queue URL names
 * is refused, as a given one is when the config is parsed: SQS would refuse every request.
 */
export function chooseSqsRegion(config: SqsConfig, fromSdk: string | undefined): string {
  if (config.region !== undefined) return config.region;
  const named = queueUrlRegion(config.queueUrl);
  if (fromSdk !== undefined) {
    if (named?.host === 'aws' && named.region !== fromSdk) {
      throw new ConfigError(
        settingLabel('region'),
        `is not set, and the SDK's region (${fromSdk}, from the AWS profile or instance metadata) differs from ${named.region}, where ${settingLabel('queueUrl')} names the queue; set ${named.region}`,
      );
    }
    return fromSdk;
  }
  if (named !== undefined) return named.region;
  const endpoint = resolveSqsEndpoint(config);
  if (endpoint !== undefined && isLocalEndpoint(endpoint)) return 'us-east-1';
  throw new ConfigError(
    settingLabel('region'),
    `is required: the SDK found no region (AWS_DEFAULT_REGION, the AWS profile, instance metadata) and ${settingLabel('queueUrl')} names none`,
  );
}

/** chooseSqsRegion as a provider: the SDK's region is looked up once, on first use, and only if none is given. */
export function sqsRegionProvider(config: SqsConfig, lookUp: RegionLookup = sdkRegion): () => Promise<string> {
  let region: Promise<string> | undefined;
  return () => (region ??= config.region !== undefined ? Promise.resolve(config.region) : lookUp().then((found) => chooseSqsRegion(config, found)));
}

export interface StaticCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

/** What awslocal signs with when nothing else is configured; LocalStack and emulators check none. */
export const LOCAL_DUMMY_CREDENTIALS: StaticCredentials = { accessKeyId: 'test', secretAccessKey: 'test' };

/**
 * The SDK's credential chain (environment, profile, SSO, web identity, container or instance
 * role), with one fallback: when it finds nothing and every request goes to a local endpoint
 * (isLocalEndpoint), requests are signed with LOCAL_DUMMY_CREDENTIALS, as awslocal does, and
 * `onDummy` is told once. Any other endpoint gets the chain's failure, with where it looked.
 */
export function sqsCredentialProvider(
  config: SqsConfig,
  options: { onDummy: (endpoint: string) => void; chain?: AwsCredentialIdentityProvider },
): AwsCredentialIdentityProvider {
  const chain = options.chain ?? defaultProvider();
  const endpoint = resolveSqsEndpoint(config);
  const local = endpoint !== undefined && isLocalEndpoint(endpoint) ? endpoint : undefined;
  let dummy = false;
  return async (properties) => {
    if (dummy) return LOCAL_DUMMY_CREDENTIALS;
    try {
      return await chain(properties);
    } catch (err) {
      if (!(err instanceof Error) || err.name !== 'CredentialsProviderError') throw err;
      if (local === undefined) {
        const missing = new Error(
          `no usable AWS credentials (${err.message}); the SDK looks in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws, SSO, web identity, and container or instance roles`,
          { cause: err },
        );
        // The SDK's name for it: the failure policy counts it broken, never retried as transient.
        missing.name = 'CredentialsProviderError';
        throw missing;
      }
      if (!dummy) {
        dummy = true;
        options.onDummy(local);
      }
      return LOCAL_DUMMY_CREDENTIALS;
    }
  };
}

/** The part of a logger the clients use: one info line about dummy credentials. */
export interface InfoLog {
  info(fields: Record<string, unknown>, msg: string): void;
}

export interface SigningOptions {
  /** Fixed credentials (the embedded emulator's); without them, sqsCredentialProvider. */
  readonly credentials?: StaticCredentials | undefined;
  /** Replaces the SDK's credential chain inside sqsCredentialProvider. */
  readonly credentialChain?: AwsCredentialIdentityProvider | undefined;
  /** Where the one line about dummy credentials for a local endpoint goes, at info; stderr without it. */
  readonly log?: InfoLog | undefined;
}

/** The region and the credentials requests are signed with; one of each per process, shared by its clients. */
export interface Signing {
  /** A region given, or sqsRegionProvider's answer. */
  readonly region: string | (() => Promise<string>);
  /** Passes `{ forceRefresh: true }` on to the chain. */
  readonly credentials: AwsCredentialIdentityProvider;
}

export function signingFor(config: SqsConfig, options: SigningOptions = {}): Signing {
  const { log, credentials } = options;
  const onDummy = (local: string) => {
    const message = 'no AWS credentials found; signing with the dummy credentials test/test, since the SQS endpoint is local';
    if (log !== undefined) log.info({ endpoint: local }, message);
    else process.stderr.write(`login-etl: ${message} (${local})\n`);
  };
  return {
    region: config.region ?? sqsRegionProvider(config),
    credentials:
      credentials === undefined
        ? sqsCredentialProvider(config, { onDummy, ...(options.credentialChain === undefined ? {} : { chain: options.credentialChain }) })
        : () => Promise.resolve(credentials),
  };
}
