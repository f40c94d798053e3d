/**
 * The secret keys behind masking, and the key ring that holds them.
 *
 * A key's secret (and a vault private key) lives in a private field, so neither
 * `JSON.stringify`, `util.inspect` nor a logger can print it; only its id, its status and a
 * vault public key are public.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, hkdfSync, randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { createRequire } from 'node:module';
import { ConfigError } from '../errors.js';

/** Fewest bytes a key may have: 256 bits. */
export const MIN_KEY_BYTES = 32;
/** Bytes of an X25519 public or private key. */
export const VAULT_KEY_BYTES = 32;

export const KEY_STATUSES = ['active', 'decrypt-only', 'retired'] as const;
/**
 * `active` masks new rows (exactly one key is); `decrypt-only` is used only to recover and to
 * rewrite values of an earlier key; `retired` is listed so that its values are recognised, but
 * never used.
 */
export type KeyStatus = (typeof KEY_STATUSES)[number];

/** Key ids travel inside masked values, between colons: short, and never a colon. */
export const KEY_ID_PATTERN = /^[A-Za-z0-9._-]{1,16}$/;

/**
 * SHA-256 of every key printed as an example in the documentation. Such a key is public, so it
 * is refused like a weak one. Stored as hashes so the examples are not spread further.
 */
const EXAMPLE_KEY_SHA256 = new Set([
  // docs/pii.md: the secret of the hmac/siv key ring example
  'b82e06dca374ee8fcbd4e2a781832dd549e266b2f68463b6699ba9ca0ed61c38',
  // docs/pii.md: the vault key ring example (secret, public key, private key)
  '8c23f8b9137c9e1549dcc9ac60e7edfb02678dc576e8a10f2c99ca781e32f938',
  'ec51730062fe9337174b369e1bde49242eaabcd9e15d65b2f28d437f35d02042',
  '1ee1bd9a1534e35f11da7c12dd496b867459b48a73018739b685456781ff849e',
]);

export interface PiiKeyOptions {
  /** Explicit id from a key ring; by default the id is derived from the secret. */
  readonly id?: string;
  readonly status?: KeyStatus;
  /** Vault mode: the X25519 public key that seals originals. */
  readonly publicKey?: Uint8Array;
  /** Vault mode, key holders only: the X25519 private key that opens them. */
  readonly privateKey?: Uint8Array;
}

export class PiiKey {
  readonly #secret: Buffer;
  readonly #privateKey: Uint8Array | undefined;
  /** Short public identifier carried in every masked value, so tokens of different keys never mix. */
  readonly id: string;
  readonly status: KeyStatus;
  readonly publicKey: Uint8Array | undefined;

  constructor(secret: Buffer, options: PiiKeyOptions = {}) {
    this.#secret = Buffer.from(secret);
    this.#privateKey = options.privateKey === undefined ? undefined : Uint8Array.from(options.privateKey);
    this.id = options.id ?? this.derive('key-id').toString('hex').slice(0, 8);
    this.status = options.status ?? 'active';
    this.publicKey = options.publicKey === undefined ? undefined : Uint8Array.from(options.publicKey);
  }

  /** Derives an independent sub-key for one purpose (one token space per field and mode). */
  derive(purpose: string, bytes = 32): Buffer {
    return Buffer.from(hkdfSync('sha256', this.#secret, 'login-etl', `login-etl/v1/${purpose}`, bytes));
  }

  get hasPrivateKey(): boolean {
    return this.#privateKey !== undefined;
  }

  /** The vault private key, for the code that opens sealed values; undefined when not held. */
  privateKey(): Uint8Array | undefined {
    return this.#privateKey;
  }

  toJSON(): { id: string; status: KeyStatus } {
    return { id: this.id, status: this.status };
  }

  [inspect.custom](): string {
    return `PiiKey(${this.id}, ${this.status})`;
  }
}

/** The keys of a deployment: exactly one active key masks new rows; the others only recover. */
export class KeyRing {
  readonly active: PiiKey;
  readonly keys: readonly PiiKey[];

  constructor(keys: readonly PiiKey[], setting: string) {
    const active = keys.filter((k) => k.status === 'active');
    if (active.length !== 1) throw new ConfigError(setting, `must have exactly one active key, has ${active.length}`);
    const ids = new Set<string>();
    for (const key of keys) {
      if (ids.has(key.id)) throw new ConfigError(setting, `lists the key id '${key.id}' twice`);
      ids.add(key.id);
    }
    this.active = active[0] as PiiKey;
    this.keys = keys;
  }

  get(id: string): PiiKey | undefined {
    return this.keys.find((k) => k.id === id);
  }

  toJSON(): { keys: { id: string; status: KeyStatus }[] } {
    return { keys: this.keys.map((k) => k.toJSON()) };
  }

  [inspect.custom](): string {
    return `KeyRing(${this.keys.map((k) => `${k.id}:${k.status}`).join(', ')})`;
  }
}

const HEX = /^[0-9a-fA-F]+$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

/** A key as written and as decoded; the text is kept only for the checks on its letters. */
interface KeyText {
  readonly bytes: Buffer;
  /** The text was read as base64 although it is not hex: random base64 mixes upper and lower case. */
  readonly base64Letters: boolean;
  readonly body: string;
}

/** Decodes hex or base64 text (optionally prefixed `hex:` or `base64:`); never echoes it. */
function decodeKeyText(text: string, setting: string): KeyText {
  const explicit = /^(hex|base64):(.*)$/s.exec(text);
  const encoding = explicit?.[1];
  const body = explicit?.[2] ?? text;
  const hex = HEX.test(body);
  if ((encoding === undefined || encoding === 'hex') && hex && body.length % 2 === 0) return { bytes: Buffer.from(body, 'hex'), base64Letters: false, body };
  if (encoding !== 'hex' && BASE64.test(body)) return { bytes: Buffer.from(body, 'base64'), base64Letters: !hex, body };
  if (encoding !== 'hex' && BASE64URL.test(body)) return { bytes: Buffer.from(body, 'base64url'), base64Letters: !hex, body };
  throw new ConfigError(setting, 'is not hex or base64; make a key with `login-etl keygen`');
}

/**
 * Fewest distinct values that `n` random bytes may show: 60% of the number expected,
 * 256 * (1 - (255/256)^n), rounded down. For 32 bytes that is 18 of an expected 30; 32 random
 * bytes have fewer than 18 distinct values with a probability of about 1e-13 (exact occupancy
 * distribution), the 31 steps between them fewer than 17 with one of about 3e-14. A pattern
 * repeated, a passphrase decoded as base64 or a counting sequence has far fewer.
 */
function fewestDistinct(n: number): number {
  return Math.floor(0.6 * 256 * (1 - (255 / 256) ** n));
}

/**
 * How many standard deviations more characters matching `letters` the text has than random
 * base64 would (binomial, p = 26/64). Random base64 goes above 4.3 about once in 100,000 keys
 * (none in 100,000 sampled); `keygen` draws again when a key it made would be refused.
 */
function caseExcess(text: string, letters: RegExp): number {
  const n = text.replace(/=+$/, '').length;
  const p = 26 / 64;
  const count = text.match(letters)?.length ?? 0;
  return (count - n * p) / Math.sqrt(n * p * (1 - p));
}

function repeatsItself(text: string, window: number): boolean {
  const seen = new Set<string>();
  for (let i = 0; i + window <= text.length; i += 1) {
    const part = text.slice(i, i + window);
    if (seen.has(part)) return true;
    seen.add(part);
  }
  return false;
}

function distinct(values: Iterable<number>): number {
  return new Set(values).size;
}

/**
 * Refuses bytes that are not a usable secret: too short, one repeated byte, a published example,
 * base64 text of one letter case, too few distinct byte values, steps between neighbouring bytes
 * that repeat (00 01 02 ..., 7f 7e 7d ...), bytes that are all printable text, base64 that reads
 * like CamelCase words, or text that repeats a run of itself. 32 random bytes are refused about
 * once in 100,000 (the words check); `keygen` never prints such a key, it draws again.
 */
function assertStrong(key: KeyText, setting: string, minBytes: number): void {
  const { bytes } = key;
  const keygen = 'make a key with `login-etl keygen`';
  if (bytes.length < minBytes) {
    throw new ConfigError(setting, `decodes to ${bytes.length} bytes; at least ${minBytes} random bytes are needed`);
  }
  if (bytes.every((b) => b === bytes[0])) {
    throw new ConfigError(setting, `is one byte repeated, which is not a secret; ${keygen}`);
  }
  if (EXAMPLE_KEY_SHA256.has(createHash('sha256').update(bytes).digest('hex'))) {
    throw new ConfigError(setting, `is an example key printed in the documentation; ${keygen}`);
  }
  // Base64 of 32 random bytes is 43 characters drawn from 64: that none is an upper-case letter
  // (or none a lower-case one) has a probability of about (38/64)^43, 2e-10. A passphrase of
  // lower-case words is valid base64 text, and this is what gives it away.
  if (key.base64Letters && !(/[A-Z]/.test(key.body) && /[a-z]/.test(key.body))) {
    throw new ConfigError(setting, `is base64 text of one letter case, which random base64 practically never is: a passphrase, not a key; ${keygen}`);
  }
  if (distinct(bytes) < fewestDistinct(bytes.length)) {
    throw new ConfigError(setting, `does not look random: too few distinct byte values, as in a repeated pattern or a passphrase; ${keygen}`);
  }
  // The steps between neighbouring random bytes are random bytes too (one less of them).
  const steps = bytes.subarray(1).map((b, i) => (b - (bytes[i] as number)) & 0xff);
  if (distinct(steps) < fewestDistinct(steps.length)) {
    throw new ConfigError(setting, `does not look random: its bytes follow a pattern, such as counting up or down; ${keygen}`);
  }
  // 32 random bytes are all printable ASCII with a probability of (95/256)^32, about 2e-14: such
  // a key is text (a sentence written as hex or base64), however random its letters look.
  if (bytes.every((b) => b >= 0x20 && b <= 0x7e)) {
    throw new ConfigError(setting, `decodes to plain text, not random bytes: a passphrase, not a key; ${keygen}`);
  }
  // Words written in CamelCase are valid base64 too; they give themselves away by having far
  // more letters of one case than random base64, where each character is lower-case with a
  // probability of 26/64.
  if (key.base64Letters && (caseExcess(key.body, /[a-z]/g) > 4.3 || caseExcess(key.body, /[A-Z]/g) > 4.3)) {
    throw new ConfigError(setting, `reads like words, not random base64: a passphrase, not a key; ${keygen}`);
  }
  // A run of characters that comes back later in the text: a word or pattern repeated. In random
  // text of this length a repeat of 6 base64 (or 10 hex) characters has a probability below 1e-8.
  if (repeatsItself(key.body, key.base64Letters ? 6 : 10)) {
    throw new ConfigError(setting, `repeats part of itself, which random keys do not; ${keygen}`);
  }
}

/**
 * Decodes a key written as hex or base64 (optionally prefixed `hex:` or `base64:`).
 * Refuses keys shorter than 32 bytes, documented examples and keys that do not look random
 * (see assertStrong). `setting` names the source in errors; the value itself is never echoed.
 */
export function parsePiiKey(text: string, setting: string, options: PiiKeyOptions = {}): PiiKey {
  const key = decodeKeyText(text, setting);
  assertStrong(key, setting, MIN_KEY_BYTES);
  return new PiiKey(key.bytes, options);
}

/** The X25519 public key of a private key, with Node's own implementation. */
export function x25519PublicKey(privateKey: Uint8Array): Uint8Array {
  // The fixed PKCS#8 header of a raw X25519 private key (RFC 8410); Node derives the public half.
  const pkcs8 = Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), Buffer.from(privateKey)]);
  const publicJwk = createPublicKey(createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })).export({ format: 'jwk' });
  return Buffer.from(publicJwk.x ?? '', 'base64url');
}

function vaultKey(value: unknown, setting: string): Uint8Array {
  if (typeof value !== 'string') throw new ConfigError(setting, 'must be a hex or base64 string');
  const key = decodeKeyText(value.trim(), setting);
  if (key.bytes.length !== VAULT_KEY_BYTES) throw new ConfigError(setting, `decodes to ${key.bytes.length} bytes; an X25519 key has ${VAULT_KEY_BYTES}`);
  assertStrong(key, setting, VAULT_KEY_BYTES);
  return key.bytes;
}

/**
 * JSON as it is; anything else as YAML. The YAML parser is loaded only for YAML text, so the
 * usual JSON ring costs no start-up time. JSON's duplicate names are refused, as YAML's are.
 */
function parseJsonOrYaml(text: string): unknown {
  if (/^\s*[[{]/.test(text)) {
    try {
      const document: unknown = JSON.parse(text);
      if (!hasDuplicateNames(text)) return document;
    } catch {
      // Not JSON after all (YAML's flow style looks alike): the YAML parser decides.
    }
  }
  const { parse } = createRequire(import.meta.url)('yaml') as typeof import('yaml');
  return parse(text);
}

/** Whether an object of valid JSON text names a member twice (JSON.parse keeps the last silently). */
function hasDuplicateNames(text: string): boolean {
  const objects: (Set<string> | undefined)[] = [];
  for (let i = 0; i < text.length; i += 1) {
    const ch = text[i];
    if (ch === '{') objects.push(new Set());
    else if (ch === '[') objects.push(undefined);
    else if (ch === '}' || ch === ']') objects.pop();
    else if (ch === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      const name = text.slice(i, end + 1);
      i = end;
      let next = end + 1;
      while (/\s/.test(text[next] ?? '')) next += 1;
      const members = objects.at(-1);
      if (text[next] === ':' && members !== undefined) {
        if (members.has(name)) return true;
        members.add(name);
      }
    }
  }
  return false;
}

/**
 * Reads a key ring: JSON or YAML, either a list of keys or `{ keys: [...] }`, each key
 * `{ id, status, secret, public_key?, private_key? }`. Errors name the setting and the entry,
 * never a value; parser messages are dropped because they can quote the text.
 */
export function parseKeyRing(text: string, setting: string): KeyRing {
  let document: unknown;
  try {
    document = parseJsonOrYaml(text);
  } catch {
    throw new ConfigError(setting, 'is not valid JSON or YAML');
  }
  const list = Array.isArray(document) ? document : (document as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(list) || list.length === 0) throw new ConfigError(setting, 'must hold a non-empty list of keys (`keys: [...]`)');
  const keys = list.map((entry: unknown, index) => {
    const where = `${setting} keys[${index}]`;
    if (typeof entry !== 'object' || entry === null) throw new ConfigError(where, 'must be an object with id, status and secret');
    const e = entry as Record<string, unknown>;
    if (typeof e.id !== 'string' || !KEY_ID_PATTERN.test(e.id)) {
      throw new ConfigError(`${where}.id`, 'must be 1 to 16 letters, digits, dots, dashes or underscores');
    }
    const status = e.status ?? 'active';
    if (typeof status !== 'string' || !(KEY_STATUSES as readonly string[]).includes(status)) {
      throw new ConfigError(`${where}.status`, `must be one of ${KEY_STATUSES.join(', ')}`);
    }
    if (typeof e.secret !== 'string') throw new ConfigError(`${where}.secret`, 'is required (make one with `login-etl keygen`)');
    const publicKey = e.public_key === undefined ? undefined : vaultKey(e.public_key, `${where}.public_key`);
    const privateKey = e.private_key === undefined ? undefined : vaultKey(e.private_key, `${where}.private_key`);
    if (privateKey !== undefined) {
      if (publicKey === undefined) throw new ConfigError(`${where}.public_key`, 'is required next to a private_key');
      if (!Buffer.from(x25519PublicKey(privateKey)).equals(Buffer.from(publicKey))) {
        throw new ConfigError(`${where}.private_key`, 'does not belong to the public_key of the same entry');
      }
    }
    return parsePiiKey(e.secret.trim(), `${where}.secret`, {
      id: e.id,
      status: status as KeyStatus,
      ...(publicKey === undefined ? {} : { publicKey }),
      ...(privateKey === undefined ? {} : { privateKey }),
    });
  });
  return new KeyRing(keys, setting);
}

/** A fresh random 32-byte key, written as base64. */
export function generateKeyText(): string {
  // The randomness checks refuse a few random keys by chance (about 3e-5 of them): draw again.
  for (;;) {
    const text = randomBytes(MIN_KEY_BYTES).toString('base64');
    if (passes(text, MIN_KEY_BYTES)) return text;
  }
}

function passes(text: string, minBytes: number): boolean {
  try {
    assertStrong(decodeKeyText(text, 'keygen'), 'keygen', minBytes);
    return true;
  } catch {
    return false;
  }
}

/** A fresh vault key: an HMAC secret and an X25519 key pair, as key ring entries. */
export function generateVaultKey(id?: string): { pipeline: Record<string, string>; holder: Record<string, string> } {
  const secret = generateKeyText();
  let pub: string;
  let priv: string;
  // Both halves go through the same randomness checks as a secret when a ring is read.
  do {
    const { publicKey, privateKey } = generateKeyPairSync('x25519');
    pub = publicKey.export({ format: 'jwk' }).x ?? '';
    priv = privateKey.export({ format: 'jwk' }).d ?? '';
  } while (!passes(Buffer.from(pub, 'base64url').toString('base64'), VAULT_KEY_BYTES) || !passes(Buffer.from(priv, 'base64url').toString('base64'), VAULT_KEY_BYTES));
  const keyId = id ?? new PiiKey(Buffer.from(secret, 'base64')).id;
  const pipeline = {
    id: keyId,
    status: 'active',
    secret,
    public_key: Buffer.from(pub, 'base64url').toString('base64'),
  };
  return { pipeline, holder: { ...pipeline, private_key: Buffer.from(priv, 'base64url').toString('base64') } };
}
