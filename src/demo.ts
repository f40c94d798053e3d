/**
 * `login-etl demo`: the whole pipeline with nothing installed but Node.js. Starts the fauxqs SQS
 * emulator in this process and an embedded Postgres, loads generated sample events into
 * `login-queue`, drains it, and shows what landed.
 */
import pg from 'pg';
import { defaultRunConfig, type LogLevel } from './config.js';
import { startLocalPostgres, type LocalPostgres } from './embedded/postgres.js';
import { generateSampleEvents } from './embedded/sample-data.js';
import { EMULATOR_CREDENTIALS, startLocalSqs, type LocalSqs } from './embedded/sqs.js';
import { createLogger, type LogDestination } from './observability/logger.js';
import { printable } from './observability/printable.js';
import { plural } from './plural.js';
import { formatTable } from './observability/table.js';
import { runPipeline, type RunSummary } from './run.js';
import { sendLines } from './send.js';
import { PiiKey } from './transform/key.js';
import { describeShape, type BodyShape } from './transform/shape.js';
import { randomBytes } from 'node:crypto';

export interface DemoOptions {
  readonly count: number;
  readonly seed: number;
  readonly keep: boolean;
  readonly logLevel: LogLevel;
  readonly stop: AbortSignal;
  readonly print: (line: string) => void;
  /** Where the demo's log lines go (they are errors only, by default). */
  readonly logTo: LogDestination;
  /** How to run login-etl from the current directory, as the printed commands spell it. */
  readonly self: string;
}

const QUEUE_NAME = 'login-queue';

export async function runDemo(options: DemoOptions): Promise<RunSummary> {
  const { print } = options;
  const log = createLogger(options.logLevel, options.logTo);
  const cleanup: (() => Promise<void>)[] = [];
  try {
    print('Starting an embedded Postgres and the fauxqs SQS emulator...');
    const postgres: LocalPostgres = await startLocalPostgres();
    cleanup.push(() => postgres.stop());
    const sqs: LocalSqs = await startLocalSqs();
    cleanup.push(() => sqs.stop());
    const queueUrl = await sqs.createQueue(QUEUE_NAME);
    const sqsConfig = { queueUrl, region: 'us-east-1', endpoint: sqs.endpoint };

    const events = generateSampleEvents({ count: options.count, seed: options.seed });
    await sendLines(sqs.client, queueUrl, events.map((e) => e.body));
    print(`Loaded ${plural(events.length, 'sample login event')} into ${QUEUE_NAME} (${events.filter((e) => !e.valid).length} malformed).`);

    const summary = await runPipeline(
      {
        ...defaultRunConfig({
          sqs: sqsConfig,
          databaseUrl: postgres.url,
          // A throw-away key: the demo's masked values mean nothing outside this run.
          piiKey: new PiiKey(randomBytes(32)),
        }),
        waitTimeSeconds: 1,
        logLevel: options.logLevel,
        drain: true,
        http: undefined,
      },
      { log, stop: options.stop, credentials: EMULATOR_CREDENTIALS },
    );

    print('');
    print(formatTable([
      ['received', String(summary.received)],
      ['written', String(summary.written)],
      ['rejected', String(summary.rejected)],
      ['duplicates skipped', String(summary.duplicates)],
      ['elapsed', `${(summary.elapsedMs / 1000).toFixed(2)} s`],
    ], { header: false }));
    await showTables(postgres.url, print);

    if (options.keep && !options.stop.aborted) {
      // LocalStack's classic URL form on the emulator's loopback address: it works as printed,
      // with no endpoint setting and no credentials (local endpoints get dummy ones).
      const printedQueueUrl = `${sqs.endpoint}/000000000000/${QUEUE_NAME}`;
      const { self } = options;
      print('');
      print('Still running; press Ctrl-C to stop and delete everything. From this directory, in another terminal:');
      print(`  ${self} generate --count 10 --seed 2 | ${self} send --queue-url ${printedQueueUrl}`);
      print(`  PII_KEY="$(${self} keygen)" ${self} run --drain --http-port 0 --queue-url ${printedQueueUrl} --database-url ${postgres.url}`);
      print(`  ${self} report --database-url ${postgres.url}`);
      print(`  psql ${postgres.url}`);
      print(`  queue URL: ${printedQueueUrl}  (SQS endpoint ${sqs.endpoint}; no credentials needed)`);
      await new Promise<void>((resolve) => {
        if (options.stop.aborted) resolve();
        options.stop.addEventListener('abort', () => resolve(), { once: true });
      });
    }
    return summary;
  } finally {
    for (const release of cleanup.reverse()) await release().catch(() => undefined);
    if (options.keep) print('Stopped: the embedded Postgres (its data directory too) and the SQS emulator are gone.');
  }
}

async function showTables(databaseUrl: string, print: (line: string) => void): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const total = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM user_logins');
    const rows = await client.query<Record<string, unknown>>(
      `SELECT user_id, device_type, masked_ip, masked_device_id, locale,
              login_etl.app_version_text(app_version) AS app_version, create_date::text
         FROM user_logins ORDER BY user_id LIMIT 5`,
    );
    const repeated = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM (SELECT masked_device_id FROM user_logins
         WHERE masked_device_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1) d`,
    );
    const rejected = await client.query<{ message_id: string; reason: string; body_bytes: number; body_shape: BodyShape }>(
      'SELECT message_id, reason, body_bytes, body_shape FROM login_etl.rejected_messages ORDER BY rejected_at LIMIT 3',
    );
    print('');
    print(`user_logins: ${plural(total.rows[0]?.n ?? 0, 'row')}, the first 5 (masked values shortened here):`);
    print(formatRows(rows.rows));
    const repeats = repeated.rows[0]?.n ?? 0;
    print(`${plural(repeats, 'masked device id')} ${repeats === 1 ? 'appears' : 'appear'} more than once: repeat logins stay visible after masking.`);
    print('');
    print('login_etl.rejected_messages (bodies sealed for key holders: `login-etl rejected show`):');
    for (const row of rejected.rows) print(printable(`  ${row.message_id}: ${row.reason}; ${row.body_bytes} bytes, ${describeShape(row.body_shape)}`));
    if (rejected.rows.length === 0) print('  (none)');
  } finally {
    await client.end();
  }
}

/** Escaped first (stored text must not reach the terminal raw), then cut to fit. */
function shorten(value: unknown): string {
  const text = value === null || value === undefined ? 'null' : printable(String(value));
  return text.length > 24 ? `${text.slice(0, 23)}…` : text;
}

function formatRows(rows: readonly Record<string, unknown>[]): string {
  if (rows.length === 0) return '  (none)';
  const header = Object.keys(rows[0] ?? {});
  return formatTable([header, ...rows.map((row) => header.map((column) => shorten(row[column])))]);
}
