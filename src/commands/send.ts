/** `login-etl send`: one SQS message per line of a JSON Lines file. */
import { SQS_SETTINGS } from '../settings.js';
import { lines, type Command } from '../cli/command.js';
import { plural } from '../plural.js';

export const send: Command = {
  summary: 'Send one SQS message per line of a JSON Lines file (SendMessageBatch).',
  settings: [...SQS_SETTINGS, 'file'],
  settingHelp: { queueUrl: { description: 'URL of the SQS queue to send to (required).' } },
  extra: {
    'create-queue': { type: 'boolean', description: 'Create the queue the URL names first, if it does not exist (CreateQueue).' },
  },
  async action({ flags, env, io }) {
    const { out, err } = lines(io);
    const [{ collectSettings, requiredSetting, parseSqsConfig }, { openLines, sendLines }, { createSqsClient }] = await Promise.all([
      import('../config.js'),
      import('../send.js'),
      import('../source/sqs.js'),
    ]);
    const raw = collectSettings([...SQS_SETTINGS, 'file'], flags, env);
    const sqs = parseSqsConfig(raw);
    const file = requiredSetting('file', raw);
    const { assertQueueName, createQueue, queueNameOf } = await import('../queue.js');
    const name = queueNameOf(sqs.queueUrl);
    if (flags['create-queue'] === true) assertQueueName(name, '--queue-url');
    const input = await openLines(file, io.stdin);
    // Otherwise a person who forgot --file sees nothing happen.
    if (file === '-' && io.stdin.isTTY === true) err('reading JSON Lines from standard input until end of file (Ctrl-D)');
    const client = createSqsClient(sqs, { maxSockets: 16 });
    try {
      if (flags['create-queue'] === true) await createQueue(client, name);
      const sent = await sendLines(client, sqs.queueUrl, input);
      out(`sent ${plural(sent, 'message')}`);
    } finally {
      client.destroy();
    }
    return 0;
  },
};
