/**
 * The SQS clients of `run` and `check`: the Queue the pipeline reads (the lean client, or the
 * SDK's with `--sqs-client sdk`) and the dead-letter queue (always the SDK's). Both sign with
 * one region and one credential provider (src/source/aws.ts). The SDK client is built, and the
 * SDK loaded, only when something needs it.
 */
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { AwsCredentialIdentityProvider } from '@smithy/types';
import type { SqsConfig } from '../config.js';
import { resolveSqsEndpoint, signingFor, type InfoLog, type StaticCredentials } from './aws.js';
import { LeanSqsQueue } from './lean-sqs.js';
import { DEFAULT_SQS_TIMEOUT_MS, type DeadLetterQueue, type Queue, type SqsDeadlines } from './queue.js';

export interface QueueClients {
  /** The queue `run` reads: the lean client's or the SDK's, as chosen. */
  readonly queue: Queue;
  /** The SDK client (built on first use), for the calls the Queue does not make. */
  sdkClient(): Promise<SQSClient>;
  /** The dead-letter queue at `queueUrl`, through the SDK client, with the same deadlines. */
  deadLetters(queueUrl: string): Promise<DeadLetterQueue>;
  close(): Promise<void>;
}

export interface CreateQueueOptions {
  readonly connections: number;
  readonly credentials?: StaticCredentials | undefined;
  /** Replaces the SDK's credential chain (tests: credentials that change). */
  readonly credentialChain?: AwsCredentialIdentityProvider | undefined;
  /** `lean` (the default): receive, delete, visibility and attributes over node:http; `sdk`: the SDK client for every call. */
  readonly client?: 'lean' | 'sdk' | undefined;
  /** `--sqs-timeout-seconds` in milliseconds; a receive gets its wait time on top. */
  readonly timeoutMs?: number | undefined;
  readonly log?: InfoLog | undefined;
}

/**
 * The queue as `run` (and `check`) use it, behind the one Queue interface: the lean client or
 * the SDK client, both sending every request to the same endpoint and signing with the same
 * region and credentials. The SDK client also serves the dead-letter queue.
 */
export async function createQueue(config: SqsConfig, options: CreateQueueOptions): Promise<QueueClients> {
  const deadlines: SqsDeadlines = { timeoutMs: options.timeoutMs ?? DEFAULT_SQS_TIMEOUT_MS };
  const signing = signingFor(config, options);
  let sdk: Promise<{ client: SQSClient; module: typeof import('./sqs.js') }> | undefined;
  const loadSdk = () =>
    (sdk ??= import('./sqs.js').then((module) => ({
      module,
      client: module.createSqsClient(config, { maxSockets: options.connections, tuning: 'pipeline', signing }),
    })));
  const queue: Queue =
    options.client === 'sdk'
      ? await loadSdk().then(({ module, client }) => new module.SqsQueue(client, config.queueUrl, deadlines))
      : new LeanSqsQueue({
          queueUrl: config.queueUrl,
          endpoint: resolveSqsEndpoint(config) ?? new URL(config.queueUrl).origin,
          region: signing.region,
          credentials: signing.credentials,
          connections: options.connections,
          deadlines,
        });
  return {
    queue,
    sdkClient: async () => (await loadSdk()).client,
    deadLetters: async (queueUrl) => {
      const { module, client } = await loadSdk();
      return new module.SqsDeadLetterQueue(client, queueUrl, deadlines);
    },
    async close() {
      if (queue instanceof LeanSqsQueue) await queue.close();
      // An SDK that failed to load has no client to destroy; its failure was reported where it was used.
      (await sdk?.catch(() => undefined))?.client.destroy();
    },
  };
}
