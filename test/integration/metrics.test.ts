/**
 * /metrics as Prometheus scrapes it, from the built CLI in a child process: the counts match
 * what landed in the table, rejections are counted by bounded category, and no raw PII or key
 * material appears in the output, whatever the messages held.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { freePort } from '../../src/embedded/ports.js';
import { generateKeyText } from '../../src/transform/key.js';
import { startCli } from '../helpers/cli.js';
import { query, sendBodies, useServers } from '../helpers/servers.js';

const servers = useServers();
const key = generateKeyText();

/** Valid events and rejections of every category, carrying PII that must never reach a metric. */
const RAW = ['198.51.100.23', '203.0.113.99', '444-55-6666', 'DEV-metric-secret-1', '2001:db8::77', '10.20.30.40'];
const BODIES = [
  ...Array.from({ length: 12 }, (_, i) => JSON.stringify({ user_id: `u-${i}`, ip: RAW[0], device_id: RAW[2], app_version: '1.2.3', device_type: 'ios', locale: 'FR' })),
  JSON.stringify({ user_id: 'u-v6', ip: RAW[4], device_id: RAW[3] }),
  `{"user_id": "broken", "ip": "${RAW[1]}", "device_id": "${RAW[2]}"`,
  JSON.stringify([RAW[5]]),
  JSON.stringify({ user_id: 7, ip: RAW[1], device_id: RAW[3] }),
  JSON.stringify({ user_id: 'u-bad-ip', ip: `x ${RAW[5]}`, device_id: RAW[2] }),
  JSON.stringify({ user_id: 'u-bad-version', ip: RAW[0], app_version: '1.2.3.4' }),
];

async function scrape(port: number, path = '/metrics'): Promise<{ status: number; text: string; type: string | null }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: response.status, text: await response.text(), type: response.headers.get('content-type') };
}

/** The value of one sample line, such as `login_etl_messages_rejected_total{reason="ip"}`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('/metrics', () => {
  test('counts what landed, rejections by category, and holds no raw PII or key', async () => {
    const databaseUrl = await servers.database();
    const queueUrl = await servers.queue();
    await sendBodies(servers.sqsClient, queueUrl, BODIES);
    const port = await freePort();
    const run = startCli(['run', '--wait-time-seconds', '1', '--max-batch-messages', '10', '--sqs-endpoint', servers.sqs.endpoint], {
      SQS_QUEUE_URL: queueUrl,
      DATABASE_URL: databaseUrl,
      PII_KEY: key,
      LOGIN_ETL_HTTP_PORT: String(port),
      LOGIN_ETL_HTTP_HOST: '127.0.0.1',
    });
    try {
      await run.waitForLog('pipeline started');
      let text = '';
      for (let i = 0; i < 200; i += 1) {
        text = (await scrape(port)).text;
        if (sample(text, 'login_etl_messages_received_total') === BODIES.length && sample(text, 'login_etl_messages_in_flight') === 0) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const { status, type } = await scrape(port);
      assert.equal(status, 200);
      assert.match(type ?? '', /^text\/plain; version=0\.0\.4/);

      const [rows] = await query<{ written: number; rejected: number }>(
        databaseUrl,
        `SELECT (SELECT count(*) FROM user_logins)::int AS written, (SELECT count(*) FROM login_etl.rejected_messages)::int AS rejected`,
      );
      assert.equal(rows?.written, 13);
      assert.equal(rows?.rejected, 5);
      assert.equal(sample(text, 'login_etl_messages_received_total'), 18);
      assert.equal(sample(text, 'login_etl_messages_written_total'), 13);
      assert.equal(sample(text, 'login_etl_messages_rejected_total{reason="not_json"}'), 1);
      assert.equal(sample(text, 'login_etl_messages_rejected_total{reason="not_object"}'), 1);
      assert.equal(sample(text, 'login_etl_messages_rejected_total{reason="user_id"}'), 1);
      assert.equal(sample(text, 'login_etl_messages_rejected_total{reason="ip"}'), 1);
      assert.equal(sample(text, 'login_etl_messages_rejected_total{reason="app_version"}'), 1);
      assert.equal(sample(text, 'login_etl_messages_rejected_total{reason="poison"}'), 0);
      assert.ok((sample(text, 'login_etl_batches_total') ?? 0) >= 2);
      assert.equal(sample(text, 'login_etl_batch_size_messages_sum'), 18);
      assert.ok((sample(text, 'login_etl_batch_write_seconds_count{result="committed"}') ?? 0) >= 2);
      assert.equal(sample(text, 'login_etl_messages_in_flight'), 0);
      // Every committed message has the SentTimestamp its receive asked for, and its lag is observed.
      assert.equal(sample(text, 'login_etl_event_lag_seconds_count'), 18);
      assert.ok((sample(text, 'login_etl_event_lag_seconds_sum') ?? 0) > 0);

      for (const value of [...RAW, key]) assert.ok(!text.includes(value), `${value} appears in /metrics`);
      // Every label value comes from a fixed set: no message can add a series.
      const labels = [...text.matchAll(/\{([^}]*)\}/g)].flatMap((m) => (m[1] ?? '').split(',').map((pair) => pair.split('=')[1]));
      for (const label of labels) assert.match(label ?? '', /^"[a-z_+.0-9Inf]*"$/);
    } finally {
      run.child.kill('SIGTERM');
      assert.equal((await run.exited).code, 0);
    }
  });

  test('--no-metrics turns off /metrics only; /healthz still answers', async () => {
    const port = await freePort();
    const run = startCli(['run', '--no-metrics', '--wait-time-seconds', '1', '--sqs-endpoint', servers.sqs.endpoint], {
      SQS_QUEUE_URL: await servers.queue(),
      DATABASE_URL: await servers.database(),
      PII_KEY: key,
      LOGIN_ETL_HTTP_PORT: String(port),
      LOGIN_ETL_HTTP_HOST: '127.0.0.1',
    });
    try {
      const started = await run.waitForLog('serving /healthz and /readyz');
      assert.equal(started.metrics, false);
      assert.equal((await scrape(port, '/metrics')).status, 404);
      assert.equal((await scrape(port, '/healthz')).status, 200);
    } finally {
      run.child.kill('SIGTERM');
      assert.equal((await run.exited).code, 0);
    }
  });
});
