/**
 * Masking of the PII fields `ip` and `device_id`, in one of three modes behind one interface,
 * so the pipeline does not care which mode runs:
 *
 * - `hmac`: `hmac:<key id>:<base64url HMAC-SHA-256>`, one-way. Keyed and deterministic: equal
 *   inputs give equal tokens across runs and instances, while nobody without the key can test
 *   guesses (an unkeyed hash of an IPv4 address falls to trying all 2^32 of them).
 * - `siv`: `siv:<key id>:<base64url AES-SIV(value)>`, deterministic authenticated encryption
 *   (RFC 5297) with the column name as associated data: equal inputs still compare equal, and
 *   key holders can decrypt.
 * - `vault`: the `hmac` token in the table, and the original sealed with an X25519 public key
 *   into `login_etl.pii_vault`; the pipeline cannot open what it sealed.
 *
 * Each field has its own sub-key (or associated data), so an ip and a device_id that happen to
 * be the same text get unrelated values. The key id keeps values of different keys apart.
 */
import { aessiv } from '@noble/ciphers/aes.js';
import { createHmac } from 'node:crypto';
import type { PiiKey } from './key.js';
import { aeadSealer, boxSealer, type BodySealer } from './seal.js';
import type { SealedBox } from './sealed-box.js';

export const PII_FIELDS = ['ip', 'device_id'] as const;
export type PiiField = (typeof PII_FIELDS)[number];

export const MASK_MODES = ['hmac', 'siv', 'vault'] as const;
export type MaskMode = (typeof MASK_MODES)[number];

/** The user_logins column that holds each field, bound to `siv` values as associated data. */
export const MASKED_COLUMNS: Record<PiiField, string> = { ip: 'masked_ip', device_id: 'masked_device_id' };

/** Width of the masked columns of user_logins: varchar(256). */
export const MASKED_COLUMN_CHARS = 256;

/**
 * The longest value, in UTF-8 bytes, whose `siv` form fits varchar(256) with the longest key id
 * (16 characters): 4 + 16 + 1 prefix characters leave 235 base64url characters, 176 bytes, of
 * which the synthetic IV takes 16. Fixed rather than per key, so rotating keys never changes
 * which events are accepted.
 */
export const SIV_MAX_VALUE_BYTES = 160;

/** An original sealed for key holders, stored in login_etl.pii_vault under its token. */
export interface VaultEntry {
  readonly token: string;
  readonly keyId: string;
  readonly field: PiiField;
  readonly sealed: Uint8Array;
}

/** Turns a PII value into its masked form. Inputs to `ip` must already be canonical. */
export interface Masker {
  readonly mode: MaskMode;
  readonly keyId: string;
  /** Longest value, in UTF-8 bytes, whose masked form fits the table; undefined when any does. */
  readonly maxValueBytes: number | undefined;
  /** In vault mode, pushes the sealed original onto `vault`; other modes ignore it. */
  mask(field: PiiField, value: string, vault?: VaultEntry[]): string;
  /** Seals the bodies of rejected messages with the same key: AES-GCM, or in vault mode a sealed box. */
  readonly bodies: BodySealer;
}

export class HmacMasker implements Masker {
  readonly mode: MaskMode = 'hmac';
  readonly keyId: string;
  readonly maxValueBytes = undefined;
  readonly bodies: BodySealer;
  readonly #fieldKeys: Record<PiiField, Buffer>;

  constructor(key: PiiKey) {
    this.keyId = key.id;
    this.#fieldKeys = hmacFieldKeys(key);
    this.bodies = aeadSealer(key);
  }

  mask(field: PiiField, value: string): string {
    return hmacToken(this.keyId, this.#fieldKeys[field], value);
  }
}

/** The per-field HMAC keys of a key; also used to check vault originals against their token. */
export function hmacFieldKeys(key: PiiKey): Record<PiiField, Buffer> {
  return { ip: key.derive('mask/hmac/ip'), device_id: key.derive('mask/hmac/device_id') };
}

export function hmacToken(keyId: string, fieldKey: Buffer, value: string): string {
  return `hmac:${keyId}:${createHmac('sha256', fieldKey).update(value, 'utf8').digest('base64url')}`;
}

/** The AES-256-SIV key (64 bytes: S2V half and CTR half) of a key. */
export function sivKey(key: PiiKey): Uint8Array {
  return key.derive('mask/siv', 64);
}

export function sivAssociatedData(field: PiiField): Uint8Array {
  return Buffer.from(MASKED_COLUMNS[field], 'utf8');
}

export class SivMasker implements Masker {
  readonly mode: MaskMode = 'siv';
  readonly keyId: string;
  readonly maxValueBytes = SIV_MAX_VALUE_BYTES;
  readonly bodies: BodySealer;
  readonly #key: Uint8Array;

  constructor(key: PiiKey) {
    this.keyId = key.id;
    this.#key = sivKey(key);
    this.bodies = aeadSealer(key);
  }

  mask(field: PiiField, value: string): string {
    const sealed = aessiv(this.#key, sivAssociatedData(field)).encrypt(Buffer.from(value, 'utf8'));
    return `siv:${this.keyId}:${Buffer.from(sealed).toString('base64url')}`;
  }
}

export class VaultMasker implements Masker {
  readonly mode: MaskMode = 'vault';
  readonly keyId: string;
  readonly maxValueBytes = undefined;
  readonly bodies: BodySealer;
  readonly #fieldKeys: Record<PiiField, Buffer>;
  readonly #publicKey: Uint8Array;

  constructor(
    key: PiiKey,
    private readonly box: SealedBox,
  ) {
    if (key.publicKey === undefined) throw new Error(`vault key ${key.id} has no public key`);
    this.keyId = key.id;
    this.#fieldKeys = hmacFieldKeys(key);
    this.#publicKey = key.publicKey;
    this.bodies = boxSealer(key, box);
  }

  mask(field: PiiField, value: string, vault?: VaultEntry[]): string {
    const token = hmacToken(this.keyId, this.#fieldKeys[field], value);
    vault?.push({ token, keyId: this.keyId, field, sealed: this.box.seal(Buffer.from(value, 'utf8'), this.#publicKey) });
    return token;
  }
}

/** The masker of a mode with the active key. Vault mode loads libsodium first. */
export async function createMasker(mode: MaskMode, key: PiiKey): Promise<Masker> {
  switch (mode) {
    case 'hmac':
      return new HmacMasker(key);
    case 'siv':
      return new SivMasker(key);
    case 'vault': {
      const { loadSealedBox } = await import('./sealed-box.js');
      return new VaultMasker(key, await loadSealedBox());
    }
  }
}
