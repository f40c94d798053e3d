import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { ConfigError } from '../../src/errors.js';
import { createLogger } from '../../src/observability/logger.js';
import { KNOWN_FIELDS, type FieldShape, type KnownField } from '../../src/transform/shape.js';
import type { QueueMessage } from '../../src/source/queue.js';

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

const hexBytes = (text: string) => Buffer.from(text.replace(/\s+/g, ''), 'hex');
const zerosThenOne = Buffer.concat([Buffer.alloc(31), Buffer.from([1])]);

/**
 * Keys of the right length and encoding that are not random, each with the reason it is
 * refused for. Every one of them was accepted before the randomness checks.
 */
export const NON_RANDOM_KEYS: readonly (readonly [label: string, text: string, reason: RegExp])[] = [
  ['a lower-case passphrase that is valid base64', 'changeme'.repeat(6), /base64 text of one letter case/],
  ['a mixed-case passphrase that is valid base64', 'ChangeMe'.repeat(6), /too few distinct byte values/],
  ['0123456789abcdef four times (hex)', '0123456789abcdef'.repeat(4), /too few distinct byte values/],
  ['deadbeef eight times (hex)', 'deadbeef'.repeat(8), /too few distinct byte values/],
  ['31 zero bytes then 0x01 (hex)', zerosThenOne.toString('hex'), /too few distinct byte values/],
  ['31 zero bytes then 0x01 (base64)', zerosThenOne.toString('base64'), /base64 text of one letter case/],
  ['31 zero bytes then 0x01 (hex, with the hex: prefix)', `hex:${zerosThenOne.toString('hex')}`, /too few distinct byte values/],
  ['bytes counting up, 00 to 1f (hex)', Buffer.from(Array.from({ length: 32 }, (_, i) => i)).toString('hex'), /follow a pattern/],
  ['bytes counting down, ff to e0 (base64)', Buffer.from(Array.from({ length: 32 }, (_, i) => 255 - i)).toString('base64'), /follow a pattern/],
  // RFC 5297 A.2: a test vector is public, and it counts down then up.
  ['the AES-SIV key of RFC 5297 A.2', hexBytes('7f7e7d7c 7b7a7978 77767574 73727170 40414243 44454647 48494a4b 4c4d4e4f').toString('hex'), /follow a pattern/],
  // Passphrases in CamelCase are valid base64url text with plenty of distinct bytes.
  ['CamelCase words repeated', 'CorrectHorseBatteryStapleCorrectHorseBatteryStaple', /reads like words|repeats part of itself/],
  ['a CamelCase sentence with a year', 'ThisIsMyVerySecretPipelineKeyForProductionUse2025', /reads like words/],
  ['a CamelCase sentence', 'MySuperSecretLoginEtlKeyDoNotShareWithAnyone', /reads like words/],
  ['a word repeated, then the alphabet', 'PasswordPasswordPassword1234567890ABCDEFGHIJKLMNOP', /repeats part of itself/],
  ['a sentence written as base64', Buffer.from('the quick brown fox jumps over the lazy dog!!').toString('base64'), /decodes to plain text/],
  ['a sentence written as hex', Buffer.from('The Quick Brown Fox Jumps Over The Lazy Dog 2025').toString('hex'), /decodes to plain text/],
];
