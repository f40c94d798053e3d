/**
 * The baseline: a consumer written the way it usually is. Stock SDK client, one receive loop
 * (as sqs-consumer and most hand-written consumers poll; `--concurrency` adds loops), a plain SHA-256 of ip and device_id (no key: not real masking, see docs/design.md),
 * one INSERT per message in autocommit, and one DeleteMessageBatch per received batch. No
 * ledger, so no exactly-once. Runs until `--messages` messages are deleted; prints one JSON line.
 */
import { DeleteMessageBatchCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { createHash } from 'node:crypto';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { EMULATOR_CREDENTIALS } from '../src/embedded/sqs.js';
import { drainInLoops } from './drain-loops.js';

export interface NaiveReport {
  readonly naive: true;
  readonly messages: number;
  readonly inserted: number;
  readonly skipped: number;
  readonly elapsedMs: number;
  readonly cpuSeconds: number;
}

const sha256 = (value: unknown) => (typeof value === 'string' ? createHash('sha256').update(value).digest('hex') : null);
const text = (value: unknown) => (typeof value === 'string' ? value : null);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      endpoint: { type: 'string' },
      'queue-url': { type: 'string' },
      'database-url': { type: 'string' },
      messages: { type: 'string' },
      concurrency: { type: 'string', default: '1' },
    },
  });
  const { endpoint, 'queue-url': queueUrl, 'database-url': databaseUrl } = values;
  const expected = Number(values.messages);
  const concurrency = Number(values.concurrency);
  if (endpoint === undefined || queueUrl === undefined || databaseUrl === undefined || !(expected > 0) || !(concurrency > 0)) {
    throw new Error('usage: naive-consumer --endpoint URL --queue-url URL --database-url URL --messages N [--concurrency 1]');
  }
  const sqs = new SQSClient({ region: 'us-east-1', endpoint, credentials: EMULATOR_CREDENTIALS });
  const db = new pg.Pool({ connectionString: databaseUrl, max: concurrency });
  await db.query(`CREATE TABLE IF NOT EXISTS user_logins(
    user_id varchar(128), device_type varchar(32), masked_ip varchar(256),
    masked_device_id varchar(256), locale varchar(32), app_version integer, create_date date)`);

  let inserted = 0;
  let skipped = 0;
  const measure = await drainInLoops(concurrency, expected, async (signal) => {
    const received = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 20 }), {
      abortSignal: signal,
    });
    const messages = received.Messages ?? [];
    if (messages.length === 0) return 0;
    for (const message of messages) {
      let event: Record<string, unknown>;
      try {
        event = JSON.parse(message.Body ?? '') as Record<string, unknown>;
      } catch {
        skipped += 1;
        continue;
      }
      if (typeof event.user_id !== 'string') {
        skipped += 1;
        continue;
      }
      const version = text(event.app_version);
      await db.query(
        'INSERT INTO user_logins (user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date) VALUES ($1, $2, $3, $4, $5, $6, $7)',
        [event.user_id, text(event.device_type), sha256(event.ip), sha256(event.device_id), text(event.locale),
          version === null ? null : Number.parseInt(version.replaceAll('.', ''), 10), new Date().toISOString().slice(0, 10)],
      );
      inserted += 1;
    }
    const response = await sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle ?? '' })),
      }),
    );
    return messages.length - (response.Failed ?? []).length;
  });
  sqs.destroy();
  await db.end();
  const report: NaiveReport = {
    naive: true,
    messages: measure.deleted,
    inserted,
    skipped,
    elapsedMs: measure.elapsedMs,
    cpuSeconds: measure.cpuSeconds,
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`naive-consumer: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
