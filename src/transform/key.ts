/**
 * The secret key behind masking. The key's bytes live in a private field, so neither
 * `JSON.stringify`, `util.inspect` nor a logger can print them; only its short id is public.
 */
import { hkdfSync, randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { ConfigError } from '../errors.js';

/** Fewest bytes a key may have: 256 bits. */
export const MIN_KEY_BYTES = 32;

export class PiiKey {
  readonly #secret: Buffer;
  /** Short public identifier carried in every masked value, so tokens of different keys never mix. */
  readonly id: string;

  constructor(secret: Buffer) {
    this.#secret = Buffer.from(secret);
    this.id = this.derive('key-id').toString('hex').slice(0, 8);
  }

  /** Derives an independent sub-key for one purpose (one token space per field). */
  derive(purpose: string): Buffer {
    return Buffer.from(hkdfSync('sha256', this.#secret, 'login-etl', `login-etl/v1/${purpose}`, 32));
  }

  toJSON(): { id: string } {
    return { id: this.id };
  }

  [inspect.custom](): string {
    return `PiiKey(${this.id})`;
  }
}

const HEX = /^[0-9a-fA-F]+$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

/**
 * Decodes a key written as hex or base64 (optionally prefixed `hex:` or `base64:`).
 * Refuses keys shorter than 32 bytes and keys made of one repeated byte.
 * `setting` names the source in errors; the value itself is never echoed.
 */
export function parsePiiKey(text: string, setting: string): PiiKey {
  let bytes: Buffer | undefined;
  const explicit = /^(hex|base64):(.*)$/s.exec(text);
  const encoding = explicit?.[1];
  const body = explicit?.[2] ?? text;
  if ((encoding === undefined || encoding === 'hex') && HEX.test(body) && body.length % 2 === 0) {
    bytes = Buffer.from(body, 'hex');
  } else if (encoding !== 'hex' && BASE64.test(body)) {
    bytes = Buffer.from(body, 'base64');
  } else if (encoding !== 'hex' && BASE64URL.test(body)) {
    bytes = Buffer.from(body, 'base64url');
  }
  if (bytes === undefined) {
    throw new ConfigError(setting, 'is not hex or base64; make a key with `login-etl keygen`');
  }
  if (bytes.length < MIN_KEY_BYTES) {
    throw new ConfigError(setting, `decodes to ${bytes.length} bytes; at least ${MIN_KEY_BYTES} random bytes are needed`);
  }
  if (bytes.every((b) => b === bytes[0])) {
    throw new ConfigError(setting, 'is one byte repeated, which is not a secret; make a key with `login-etl keygen`');
  }
  return new PiiKey(bytes);
}

/** A fresh random 32-byte key, written as base64. */
export function generateKeyText(): string {
  return randomBytes(MIN_KEY_BYTES).toString('base64');
}
