/**
 * A local SQS for the demo and the tests: the `fauxqs` emulator, in this process, listening on
 * 127.0.0.1 only, on a free port.
 */
import { CreateQueueCommand, SQSClient } from '@aws-sdk/client-sqs';
import { freePort } from './ports.js';

export interface LocalSqs {
  /** The endpoint to send every SQS request to. */
  readonly endpoint: string;
  /** A client bound to the emulator, with the dummy credentials it accepts. */
  readonly client: SQSClient;
  /** Creates a queue with CreateQueue, as a user would, and returns its URL. */
  createQueue(name: string, attributes?: Record<string, string>): Promise<string>;
  stop(): Promise<void>;
}

/** Credentials the emulator accepts; it checks none. */
export const EMULATOR_CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' } as const;

/**
 * Queue URLs name `sqs.us-east-1.<urlHost>:<port>` (default `localhost`), as newer LocalStack
 * does: a host that may not resolve, so clients must be given the endpoint. Like LocalStack,
 * the emulator also accepts any other spelling of a queue's URL, such as LocalStack's classic
 * `http://localhost:4566/000000000000/<name>`: it finds the queue by account and name.
 */
export async function startLocalSqs(options: { urlHost?: string } = {}): Promise<LocalSqs> {
  // Imported on demand so that commands without an emulator do not pay for loading it.
  const { buildApp } = await import('fauxqs');
  const urlHost = options.urlHost ?? 'localhost';
  const app = buildApp({ logger: false, host: urlHost });
  const port = await freePort();
  app.addHook('preHandler', async (request) => {
    const body = request.body as { QueueUrl?: unknown } | null | undefined;
    if (typeof body !== 'object' || body === null || typeof body.QueueUrl !== 'string') return;
    const match = /\/(\d{12})\/([\w-]{1,80})\/?$/.exec(body.QueueUrl);
    if (match) body.QueueUrl = `http://sqs.us-east-1.${urlHost}:${port}/${match[1]}/${match[2]}`;
  });
  await app.listen({ host: '127.0.0.1', port });
  const connected = connectLocalSqs(`http://127.0.0.1:${port}`);
  return {
    ...connected,
    async stop() {
      await connected.stop();
      await app.close();
    },
  };
}

/** An emulator already running at `endpoint` (started by another process); `stop` only lets go of it. */
export function connectLocalSqs(endpoint: string): LocalSqs {
  const client = new SQSClient({ region: 'us-east-1', endpoint, credentials: EMULATOR_CREDENTIALS });
  return {
    endpoint,
    client,
    async createQueue(name, attributes) {
      const { QueueUrl } = await client.send(new CreateQueueCommand({ QueueName: name, ...(attributes === undefined ? {} : { Attributes: attributes }) }));
      if (QueueUrl === undefined) throw new Error(`the emulator returned no URL for queue ${name}`);
      return QueueUrl;
    },
    stop() {
      client.destroy();
      return Promise.resolve();
    },
  };
}
