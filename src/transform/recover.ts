/**
 * Recovering originals from masked values, for key holders. `siv` values decrypt with their
 * key; `hmac` values are one-way unless a vault row holds the original, sealed for the holder of
 * the vault private key. Every failure is a refusal with a reason that never quotes an original:
 * a value that does not authenticate is never "decrypted" to garbage.
 */
import { aessiv } from '@noble/ciphers/aes.js';
import type { KeyRing, PiiKey } from './key.js';
import { hmacFieldKeys, hmacToken, PII_FIELDS, sivAssociatedData, sivKey, type PiiField } from './mask.js';
import type { SealedBox } from './sealed-box.js';

/** `<mode>:<key id>:<base64url>`, the shape of every masked value. */
export const MASKED_VALUE = /^(hmac|siv):([A-Za-z0-9._-]{1,16}):([A-Za-z0-9_-]+)$/;

export interface ParsedValue {
  readonly mode: 'hmac' | 'siv';
  readonly keyId: string;
  readonly payload: string;
}

export function parseMasked(value: string): ParsedValue | undefined {
  const match = MASKED_VALUE.exec(value);
  if (match === null) return undefined;
  return { mode: match[1] as 'hmac' | 'siv', keyId: match[2] as string, payload: match[3] as string };
}

/** A vault row: the sealed original behind an hmac token. */
export interface VaultRow {
  readonly keyId: string;
  readonly field: PiiField;
  readonly sealed: Uint8Array;
}

export type Recovery =
  | { readonly kind: 'recovered'; readonly value: string; readonly keyId: string; readonly field: PiiField; readonly original: string }
  | { readonly kind: 'one-way'; readonly value: string; readonly keyId: string }
  | { readonly kind: 'refused'; readonly value: string; readonly reason: string };

export class Recoverer {
  constructor(
    private readonly ring: KeyRing,
    private readonly box: SealedBox | undefined,
  ) {}

  /**
   * Recovers one value. `vault` is the vault row of an hmac token, if there is one. With
   * `field`, the value must belong to that column: a `siv` value is bound to it as associated
   * data, and an `hmac` value's vault entry must be of that field.
   */
  recover(value: string, vault?: VaultRow, field?: PiiField): Recovery {
    const parsed = parseMasked(value);
    if (parsed === undefined) return { kind: 'refused', value, reason: 'is not a masked value (mode:key id:data)' };
    const key = this.ring.get(parsed.keyId);
    if (parsed.mode === 'hmac' && vault === undefined) return { kind: 'one-way', value, keyId: parsed.keyId };
    if (key === undefined) return { kind: 'refused', value, reason: `key ${parsed.keyId} is not in the key ring` };
    if (key.status === 'retired') return { kind: 'refused', value, reason: `key ${parsed.keyId} is retired` };
    if (parsed.mode === 'siv') return this.#decrypt(value, parsed, key, field);
    const entry = vault as VaultRow;
    if (field !== undefined && entry.field !== field) {
      return { kind: 'refused', value, reason: `its vault entry is of ${entry.field}, not ${field} (moved from the other column)` };
    }
    return this.#open(value, key, entry);
  }

  #decrypt(value: string, parsed: ParsedValue, key: PiiKey, field: PiiField | undefined): Recovery {
    const data = Buffer.from(parsed.payload, 'base64url');
    for (const candidate of field === undefined ? PII_FIELDS : [field]) {
      try {
        const plain = aessiv(sivKey(key), sivAssociatedData(candidate)).decrypt(data);
        return { kind: 'recovered', value, keyId: key.id, field: candidate, original: Buffer.from(plain).toString('utf8') };
      } catch {
        // Not this column, or altered: try the next column, then refuse.
      }
    }
    return { kind: 'refused', value, reason: `does not authenticate with key ${key.id}${field === undefined ? '' : ` as ${field}`} (altered, moved, or made with another key)` };
  }

  #open(value: string, key: PiiKey, vault: VaultRow): Recovery {
    const privateKey = key.privateKey();
    if (privateKey === undefined || key.publicKey === undefined || this.box === undefined) {
      return { kind: 'refused', value, reason: `needs the vault private_key of key ${key.id}` };
    }
    let original: string;
    try {
      original = Buffer.from(this.box.open(vault.sealed, key.publicKey, privateKey)).toString('utf8');
    } catch {
      return { kind: 'refused', value, reason: `its vault entry does not open with key ${key.id} (altered, or sealed for another key)` };
    }
    // Anyone with the public key can seal, so check that the original really has this token.
    if (hmacToken(key.id, hmacFieldKeys(key)[vault.field], original) !== value) {
      return { kind: 'refused', value, reason: 'its vault entry does not match the token (altered or swapped)' };
    }
    return { kind: 'recovered', value, keyId: key.id, field: vault.field, original };
  }
}
