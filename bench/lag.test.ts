import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { histogramBuckets, histogramQuantile } from './lag.js';

describe('histogramQuantile', () => {
  const text = [
    '# TYPE login_etl_event_lag_seconds histogram',
    'login_etl_event_lag_seconds_bucket{le="0.05"} 50',
    'login_etl_event_lag_seconds_bucket{le="0.1"} 90',
    'login_etl_event_lag_seconds_bucket{le="0.25"} 99',
    'login_etl_event_lag_seconds_bucket{le="+Inf"} 100',
    'login_etl_event_lag_seconds_sum 7',
    'login_etl_event_lag_seconds_count 100',
  ].join('\n');

  it('reads the buckets and interpolates inside the one the rank falls in, as histogram_quantile does', () => {
    const buckets = histogramBuckets(text, 'login_etl_event_lag_seconds');
    assert.equal(buckets.length, 4);
    assert.equal(histogramQuantile(0.5, buckets), 0.05);
    assert.ok(Math.abs((histogramQuantile(0.7, buckets) ?? 0) - 0.075) < 1e-12);
    assert.equal(histogramQuantile(0.99, buckets), 0.25);
    assert.equal(histogramQuantile(0.999, buckets), 0.25, 'past the last finite bucket: its bound');
    assert.equal(histogramQuantile(0.5, []), undefined);
  });
});
