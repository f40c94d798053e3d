/**
 * Masking of the PII fields `ip` and `device_id`.
 *
 * A masked value is `hmac:<key id>:<base64url HMAC-SHA-256>`: keyed and deterministic, so equal
 * inputs give equal tokens across runs and instances, while nobody without the key can test
 * guesses (an unkeyed hash of an IPv4 address falls to trying all 2^32 of them). Each field has
 * its own sub-key, so an ip and a device_id that happen to be the same text get unrelated tokens.
 * The key id keeps tokens made with different keys from ever comparing equal.
 */
import { createHmac } from 'node:crypto';
import type { PiiKey } from './key.js';

export const PII_FIELDS = ['ip', 'device_id'] as const;
export type PiiField = (typeof PII_FIELDS)[number];

/** Turns a PII value into its masked form. Inputs to `ip` must already be canonical. */
export interface Masker {
  readonly keyId: string;
  mask(field: PiiField, value: string): string;
}

export class HmacMasker implements Masker {
  readonly keyId: string;
  readonly #fieldKeys: Record<PiiField, Buffer>;

  constructor(key: PiiKey) {
    this.keyId = key.id;
    this.#fieldKeys = { ip: key.derive('mask/hmac/ip'), device_id: key.derive('mask/hmac/device_id') };
  }

  mask(field: PiiField, value: string): string {
    const digest = createHmac('sha256', this.#fieldKeys[field]).update(value, 'utf8').digest('base64url');
    return `hmac:${this.keyId}:${digest}`;
  }
}
