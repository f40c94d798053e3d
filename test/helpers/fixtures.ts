import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { ConfigError } from '../../src/errors.js';
import { createLogger } from '../../src/observability/logger.js';
import { KNOWN_FIELDS, type FieldShape, type KnownField } from '../../src/transform/shape.js';
import type { QueueMessage } from '../../src/transform/transform.js';

export const silentLog = createLogger('silent');

let ids = 0;
export function queueMessage(body: string, overrides: Partial<QueueMessage> = {}): QueueMessage {
  ids += 1;
  return {
    messageId: `m-${ids}`,
    receiptHandle: `r-${ids}`,
    body,
    sentTimestampMs: Date.UTC(2024, 0, 31, 23, 59, 59),
    receiveCount: 1,
    ...overrides,
  };
}

export function loginBody(fields: Record<string, unknown> = {}): string {
  return JSON.stringify({
    user_id: '5b4a2c1e-3f8d-4b7a-9c6e-1d2f3a4b5c6d',
    app_version: '2.3.0',
    device_type: 'ios',
    ip: '203.0.113.7',
    locale: 'RU',
    device_id: '555-12-3456',
    ...fields,
  });
}

/** The ConfigError `fn` throws; fails the test if it throws anything else or nothing. */
export function configErrorFrom(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err: unknown) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a ConfigError, nothing was thrown');
}

/** The fields of a body shape: those given, every other known field missing. */
export function shapeFields(present: Partial<Record<KnownField, FieldShape>>): Record<KnownField, FieldShape> {
  return Object.fromEntries(KNOWN_FIELDS.map((field) => [field, present[field] ?? { type: 'missing' }])) as Record<KnownField, FieldShape>;
}

/** The numbered migrations the project ships, in order: what a fresh database gets. */
export function shippedMigrations(): string[] {
  return readdirSync(new URL('../../../migrations/', import.meta.url)).filter((f) => /^\d+_.*\.sql$/.test(f)).sort();
}
