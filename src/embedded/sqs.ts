/**
 * A local SQS for the demo and the tests: the `fauxqs` emulator, in this process, on a free port.
 */
import { startFauxqs } from 'fauxqs';

export interface LocalSqs {
  /** The endpoint to send every SQS request to. */
  readonly endpoint: string;
  /** Creates a queue and returns its URL. */
  createQueue(name: string, attributes?: Record<string, string>): string;
  stop(): Promise<void>;
}

export async function startLocalSqs(options: { port?: number } = {}): Promise<LocalSqs> {
  const server = await startFauxqs({ port: options.port ?? 0, logger: false });
  return {
    endpoint: server.address,
    createQueue: (name, attributes) => server.createQueue(name, attributes === undefined ? {} : { attributes }).queueUrl,
    stop: () => server.stop(),
  };
}
