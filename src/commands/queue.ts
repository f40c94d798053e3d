/** `login-etl queue create NAME`: a queue for LocalStack or AWS, with no other tool. */
import { UsageError } from '../errors.js';
import { lines, type Command } from '../cli/command.js';

export const queue: Command = {
  summary: 'Create an SQS queue (`queue create NAME`) and print its URL; a queue that exists already is found, not changed.',
  usage: 'create NAME [options]',
  settings: ['region', 'sqsEndpoint'],
  positionals: true,
  async action({ flags, env, positionals, io }) {
    const { out } = lines(io);
    const [verb, name, ...rest] = positionals;
    if (verb !== 'create' || name === undefined || rest.length > 0) throw new UsageError('say what to do: login-etl queue create NAME; see login-etl queue --help');
    const [{ collectSettings, optionalSetting }, { assertQueueName, createQueue }, { createSqsClient }] = await Promise.all([
      import('../config.js'),
      import('../queue.js'),
      import('../source/sqs.js'),
    ]);
    assertQueueName(name, 'NAME');
    const raw = collectSettings(['region', 'sqsEndpoint'], flags, env);
    const region = optionalSetting('region', raw);
    const endpoint = optionalSetting('sqsEndpoint', raw);
    if (endpoint === undefined && region === undefined) {
      throw new UsageError('queue create needs an endpoint (--sqs-endpoint or AWS_ENDPOINT_URL_SQS, e.g. http://localhost:4566 for LocalStack) or, for AWS, a region (--region or AWS_REGION)');
    }
    // The client takes its endpoint and region from a queue URL; this one names the queue to be.
    const queueUrl = `${endpoint ?? `https://sqs.${region}.amazonaws.com`}/000000000000/${name}`;
    const client = createSqsClient({ queueUrl, region, endpoint }, { maxSockets: 1 });
    try {
      out(await createQueue(client, name));
    } finally {
      client.destroy();
    }
    return 0;
  },
};
