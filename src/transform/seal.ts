/**
 * Rejected messages are sealed, not scrubbed. Finding every piece of personal data in arbitrary
 * text cannot be made complete (an address with a port, a key spelled `deviceId`, a value escaped
 * twice, a body too deep to walk), so a rejected body is never scanned: it is stored encrypted for
 * key holders, and in clear only what is free of PII by construction (see shape.ts).
 *
 * - `aead` (hmac and siv modes): AES-256-GCM with a sub-key derived from the masking key for this
 *   purpose alone, a random 96-bit nonce, and the message id as associated data, so a sealed body
 *   moved to another row no longer opens. Holders of the masking key can open it.
 * - `box` (vault mode): libsodium's sealed box to the vault public key, as pii_vault does. The
 *   pipeline cannot open what it sealed; holders of the vault private key can. A sealed box has no
 *   associated data, so the message id is sealed inside and checked on opening.
 *
 * Every sealed body names its scheme and key id, stored beside it, so a key ring finds its key.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import type { KeyRing, PiiKey } from './key.js';
import type { SealedBox } from './sealed-box.js';

export const SEAL_SCHEMES = ['aead', 'box'] as const;
export type SealScheme = (typeof SEAL_SCHEMES)[number];

/** A rejected body as stored: only key holders can turn it back into the original. */
export interface SealedBody {
  readonly scheme: SealScheme;
  readonly keyId: string;
  readonly sealed: Uint8Array;
}

const AEAD_PURPOSE = 'rejected/body/aes-256-gcm';
const TOKEN_PURPOSE = 'rejected/body/token';
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

function associatedData(messageId: string): Buffer {
  return Buffer.from(`login-etl/rejected/v1/${messageId}`, 'utf8');
}

/** The key-holder's view of a body sealed with AES-256-GCM under `key`. */
function aeadSeal(key: Buffer, messageId: string, body: Buffer): Uint8Array {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(associatedData(messageId));
  return Buffer.concat([nonce, cipher.update(body), cipher.final(), cipher.getAuthTag()]);
}

function aeadOpen(key: Buffer, messageId: string, sealed: Uint8Array): Buffer {
  const data = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  if (data.length < NONCE_BYTES + TAG_BYTES) throw new Error('too short');
  const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
  decipher.setAAD(associatedData(messageId));
  decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
  return Buffer.concat([decipher.update(data.subarray(NONCE_BYTES, data.length - TAG_BYTES)), decipher.final()]);
}

/** The plaintext of a sealed box: the message id (length-prefixed) then the body. */
function envelope(messageId: string, body: Buffer): Buffer {
  const id = Buffer.from(messageId, 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(id.length);
  return Buffer.concat([length, id, body]);
}

function unwrap(messageId: string, plain: Uint8Array): Buffer {
  const data = Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength);
  if (data.length < 4) throw new Error('too short');
  const idLength = data.readUInt32BE(0);
  if (data.length < 4 + idLength || data.subarray(4, 4 + idLength).toString('utf8') !== messageId) throw new Error('another message');
  return data.subarray(4 + idLength);
}

/** Seals rejected bodies with the active key, and gives each body a keyed token. */
export interface BodySealer {
  readonly keyId: string;
  seal(messageId: string, body: string): SealedBody;
  /**
   * `body:<key id>:<base64url HMAC-SHA-256>` of the body's bytes: equal bodies have equal tokens
   * (repeats stay visible), and nobody without the key can test a guess.
   */
  token(body: string): string;
}

function tokenizer(key: PiiKey): (body: string) => string {
  const tokenKey = key.derive(TOKEN_PURPOSE);
  return (body) => `body:${key.id}:${createHmac('sha256', tokenKey).update(body, 'utf8').digest('base64url')}`;
}

/** hmac and siv modes: AES-256-GCM under a sub-key of the masking key. */
export function aeadSealer(key: PiiKey): BodySealer {
  const aeadKey = key.derive(AEAD_PURPOSE);
  return {
    keyId: key.id,
    seal: (messageId, body) => ({ scheme: 'aead', keyId: key.id, sealed: aeadSeal(aeadKey, messageId, Buffer.from(body, 'utf8')) }),
    token: tokenizer(key),
  };
}

/** vault mode: a sealed box to the active key's public key; the token as in the other modes. */
export function boxSealer(key: PiiKey, box: SealedBox): BodySealer {
  const publicKey = key.publicKey;
  if (publicKey === undefined) throw new Error(`vault key ${key.id} has no public key`);
  return {
    keyId: key.id,
    seal: (messageId, body) => ({ scheme: 'box', keyId: key.id, sealed: box.seal(envelope(messageId, Buffer.from(body, 'utf8')), publicKey) }),
    token: tokenizer(key),
  };
}

export type Opened =
  | { readonly kind: 'opened'; readonly body: string }
  | { readonly kind: 'refused'; readonly reason: string };

/**
 * Opens a sealed body for a key holder. Refuses, with a reason that never quotes the body, when
 * the key is not in the ring or retired, the vault private key is missing, the body does not
 * authenticate as this message's (altered, moved to another row, or sealed with another key), or
 * it does not match the row's token. The token check matters in vault mode: anyone with the
 * public key (the pipeline, say) can seal a body, but only the secret makes its token.
 */
export function openBody(messageId: string, body: SealedBody, token: string | null, ring: KeyRing, box: SealedBox | undefined): Opened {
  const key = ring.get(body.keyId);
  if (key === undefined) return { kind: 'refused', reason: `key ${body.keyId} is not in the key ring` };
  if (key.status === 'retired') return { kind: 'refused', reason: `key ${body.keyId} is retired` };
  let opened: string;
  try {
    if (body.scheme === 'aead') opened = aeadOpen(key.derive(AEAD_PURPOSE), messageId, body.sealed).toString('utf8');
    else {
      const privateKey = key.privateKey();
      if (privateKey === undefined || key.publicKey === undefined || box === undefined) {
        return { kind: 'refused', reason: `needs the vault private_key of key ${key.id}` };
      }
      opened = unwrap(messageId, box.open(body.sealed, key.publicKey, privateKey)).toString('utf8');
    }
  } catch {
    return { kind: 'refused', reason: `does not open with key ${key.id} as message ${messageId} (altered, moved, or sealed with another key)` };
  }
  if (token === null || tokenizer(key)(opened) !== token) {
    return { kind: 'refused', reason: `does not match its body_token (sealed by someone without key ${key.id}'s secret, or the token was changed)` };
  }
  return { kind: 'opened', body: opened };
}
