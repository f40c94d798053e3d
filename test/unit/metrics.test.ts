import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { collectSettings, parseRunConfig, RUN_SETTINGS } from '../../src/config.js';
import { createMetrics, REJECTION_CATEGORIES, rejectionCategory } from '../../src/observability/metrics.js';
import { generateKeyText } from '../../src/transform/key.js';

describe('rejectionCategory', () => {
  test('maps every reason login-etl writes onto a fixed set, never its text', () => {
    const cases: [string, string][] = [
      ['body is not valid JSON', 'not_json'],
      ['message expected object, received array', 'not_object'],
      ['user_id is required', 'user_id'],
      ['user_id expected string, received number; ip is not an IPv4 or IPv6 address', 'user_id'],
      ['ip is not an IPv4 or IPv6 address', 'ip'],
      ['device_id is longer than 160 bytes, the most siv masking can store', 'device_id'],
      ['app_version has more than three parts', 'app_version'],
      ['Postgres refused the write: value too long (SQLSTATE 22001)', 'postgres_refused'],
      ['received 11 times without being committed (limit 10); last error: x', 'poison'],
      ['203.0.113.7 is odd', 'other'],
      ['', 'other'],
    ];
    for (const [reason, category] of cases) assert.equal(rejectionCategory(reason), category, reason);
    for (const [, category] of cases) assert.ok((REJECTION_CATEGORIES as readonly string[]).includes(category));
  });

  test('registries are per instance, so two can live in one process', async () => {
    const a = createMetrics();
    const b = createMetrics();
    a.attach({ stats: { received: 3 } as never, inFlight: { messages: 1, bytes: 10 } });
    assert.match(await a.registry.metrics(), /^login_etl_messages_received_total 3$/m);
    assert.match(await b.registry.metrics(), /^login_etl_messages_received_total 0$/m);
  });
});

describe('metrics setting', () => {
  const env = { SQS_QUEUE_URL: 'http://localhost:4566/000000000000/q', DATABASE_URL: 'postgres://u@h/d', PII_KEY: generateKeyText() };
  const parse = (flags: Record<string, string | boolean>, extra: Record<string, string> = {}) =>
    parseRunConfig(collectSettings(RUN_SETTINGS, flags, { ...env, ...extra }), { ...env, ...extra }).http?.metrics;

  test('on by default; --no-metrics or LOGIN_ETL_METRICS=false turns it off; a bad value names the setting', () => {
    assert.equal(parse({}), true);
    assert.equal(parse({ 'no-metrics': true }), false);
    assert.equal(parse({}, { LOGIN_ETL_METRICS: 'false' }), false);
    assert.equal(parse({}, { LOGIN_ETL_METRICS: 'true' }), true);
    assert.throws(() => parse({}, { LOGIN_ETL_METRICS: 'maybe' }), /LOGIN_ETL_METRICS \(--no-metrics\): must be true or false/);
  });
});

describe('login_etl_event_lag_seconds', () => {
  test('observes the time from SentTimestamp to the commit of each message that has one', async (t) => {
    t.mock.method(Date, 'now', () => 1_000_000);
    const metrics = createMetrics();
    const message = (sentTimestampMs: number | undefined) => ({ messageId: 'm', receiptHandle: 'r', body: '', sentTimestampMs, receiveCount: 1 });
    metrics.observeCommitted([message(1_000_000 - 40), message(1_000_000 - 200), message(1_000_000 - 2_000), message(undefined), message(1_000_000 + 500)]);
    const text = await metrics.registry.metrics();
    const value = (series: string) => Number(text.split('\n').find((l) => l.startsWith(`${series} `))?.split(' ')[1]);
    assert.equal(value('login_etl_event_lag_seconds_count'), 4, 'the message without a SentTimestamp is not observed');
    assert.equal(value('login_etl_event_lag_seconds_bucket{le="0.025"}'), 1, 'a clock behind SQS counts as 0');
    assert.equal(value('login_etl_event_lag_seconds_bucket{le="0.05"}'), 2);
    assert.equal(value('login_etl_event_lag_seconds_bucket{le="0.25"}'), 3);
    assert.equal(value('login_etl_event_lag_seconds_bucket{le="2.5"}'), 4);
    assert.ok(Math.abs(value('login_etl_event_lag_seconds_sum') - 2.24) < 1e-9);
  });
});

describe('deploy/grafana-dashboard.json', () => {
  test('queries only metrics that /metrics exposes', async () => {
    const { readFile } = await import('node:fs/promises');
    const dashboard = await readFile(new URL('../../../deploy/grafana-dashboard.json', import.meta.url), 'utf8');
    const exposed = await createMetrics().registry.metrics();
    const used = new Set(dashboard.match(/login_etl_[a-z_]+/g) ?? []);
    assert.ok(used.size >= 10);
    for (const name of used) assert.match(exposed, new RegExp(`^# TYPE ${name.replace(/_(bucket|sum|count)$/, '')} `, 'm'), name);
  });
});
