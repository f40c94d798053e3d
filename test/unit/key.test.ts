import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { inspect } from 'node:util';
import { generateKeyText, generateVaultKey, MIN_KEY_BYTES, parseKeyRing, parsePiiKey, PiiKey } from '../../src/transform/key.js';
import { configErrorFrom, NON_RANDOM_KEYS } from '../helpers/fixtures.js';

/** 32 distinct bytes 0x00..0x1f: a fixed secret for the PiiKey tests, which parsePiiKey refuses as not random. */
const SECRET = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
const SECRET_HEX = SECRET.toString('hex');
/** A key as `login-etl keygen` makes one, for the parsing tests. */
const RANDOM = Buffer.from(generateKeyText(), 'base64');
const RANDOM_HEX = RANDOM.toString('hex');

/** Every spelling of `bytes` someone could search a log for. */
function spellings(bytes: Buffer): string[] {
  return [bytes.toString('hex'), bytes.toString('hex').toUpperCase(), bytes.toString('base64'), bytes.toString('base64url')];
}

describe('parsePiiKey', () => {
  it('reads the same key from hex, HEX, base64, base64url and the hex:/base64: prefixes', () => {
    const expected = new PiiKey(RANDOM).id;
    const texts = [
      RANDOM_HEX,
      RANDOM_HEX.toUpperCase(),
      `hex:${RANDOM_HEX}`,
      RANDOM.toString('base64'),
      `base64:${RANDOM.toString('base64')}`,
      RANDOM.toString('base64url'),
      `base64:${RANDOM.toString('base64url')}`,
    ];
    for (const text of texts) {
      assert.equal(parsePiiKey(text, 'PII_KEY').id, expected, text);
    }
  });

  it('decodes base64 text that also looks like hex as base64 when prefixed base64:', () => {
    // 64 hex digits are also valid base64 (48 bytes): the prefix decides.
    const asBase64 = parsePiiKey(`base64:${RANDOM_HEX}`, 'PII_KEY');
    assert.equal(asBase64.id, new PiiKey(Buffer.from(RANDOM_HEX, 'base64')).id);
    assert.notEqual(asBase64.id, new PiiKey(RANDOM).id);
  });

  it('accepts keys longer than 32 bytes', () => {
    const long = randomBytes(64);
    assert.equal(parsePiiKey(long.toString('hex'), 'PII_KEY').id, new PiiKey(long).id);
  });

  it('refuses a 31-byte key, naming the setting and the byte count', () => {
    const text = RANDOM.subarray(0, 31).toString('hex');
    const err = configErrorFrom(() => parsePiiKey(text, 'PII_KEY'));
    assert.equal(err.setting, 'PII_KEY');
    assert.equal(err.message, `PII_KEY: decodes to 31 bytes; at least ${MIN_KEY_BYTES} random bytes are needed`);
  });

  const refused: [label: string, text: string, reason: RegExp][] = [
    ['all zero bytes', '00'.repeat(32), /one byte repeated/],
    ['one byte repeated (0xab)', 'ab'.repeat(48), /one byte repeated/],
    ['all zero bytes in base64', Buffer.alloc(32).toString('base64'), /one byte repeated/],
    ['a short base64 key', Buffer.from('correct horse battery').toString('base64'), /decodes to 21 bytes/],
    ['plain words', 'correct horse battery staple correct horse battery staple', /is not hex or base64/],
    ['hex: prefix with base64 text', `hex:${RANDOM.toString('base64')}`, /is not hex or base64/],
    ['odd-length hex with a hex: prefix', `hex:${RANDOM_HEX}a`, /is not hex or base64/],
    ['text with punctuation', `${RANDOM_HEX}!`, /is not hex or base64/],
  ];
  for (const [label, text, reason] of [...refused, ...NON_RANDOM_KEYS]) {
    it(`refuses ${label} with a ConfigError that names the setting and never echoes the key`, () => {
      const err = configErrorFrom(() => parsePiiKey(text, 'MY_KEY_SETTING'));
      assert.equal(err.setting, 'MY_KEY_SETTING');
      assert.match(err.message, /^MY_KEY_SETTING: /);
      assert.match(err.message, reason);
      const body = text.replace(/^(hex|base64):/, '');
      assert.ok(!err.message.includes(body), `message echoes the key: ${err.message}`);
      assert.ok(!err.message.includes(body.slice(0, 8)), `message echoes part of the key: ${err.message}`);
    });
  }

  it('refuses a passphrase with spaces, pointing at login-etl keygen', () => {
    const err = configErrorFrom(() => parsePiiKey('my dog has fleas and so does the cat next door', 'PII_KEY'));
    assert.equal(err.message, 'PII_KEY: is not hex or base64; make a key with `login-etl keygen`');
  });

  it('points at login-etl keygen whenever a key of the right length does not look random', () => {
    for (const [label, text] of NON_RANDOM_KEYS) {
      assert.match(configErrorFrom(() => parsePiiKey(text, 'PII_KEY')).message, /; make a key with `login-etl keygen`$/, label);
    }
  });

  it('accepts 1,000 keys made by generateKeyText (login-etl keygen)', () => {
    for (let i = 0; i < 1_000; i++) {
      const text = generateKeyText();
      assert.doesNotThrow(() => parsePiiKey(text, 'PII_KEY'), `refused a keygen key (${i})`);
    }
  });

  it('accepts 1,000 fresh vault keys: secret, public key and private key (login-etl keygen --mode vault)', () => {
    for (let i = 0; i < 1_000; i++) {
      const { holder } = generateVaultKey('v1');
      assert.equal(parseKeyRing(JSON.stringify([holder]), 'PII_KEYS').active.hasPrivateKey, true, `refused a vault key (${i})`);
    }
  });

  it('refuses the empty string', () => {
    const err = configErrorFrom(() => parsePiiKey('', 'PII_KEY'));
    assert.equal(err.setting, 'PII_KEY');
    assert.match(err.message, /^PII_KEY: /);
  });
});

describe('PiiKey', () => {
  it('has an id of 8 lowercase hex characters', () => {
    assert.match(new PiiKey(SECRET).id, /^[0-9a-f]{8}$/);
    assert.match(new PiiKey(randomBytes(32)).id, /^[0-9a-f]{8}$/);
  });

  it('gives the same id to the same secret held in different buffers', () => {
    assert.equal(new PiiKey(Buffer.from(SECRET)).id, new PiiKey(Buffer.from(SECRET_HEX, 'hex')).id);
  });

  it('keeps a stable id for a given secret across releases', () => {
    // Masked tokens carry this id: if the derivation changed, existing tokens would no longer match.
    assert.equal(new PiiKey(SECRET).id, '69e2e1d2');
  });

  it('gives different ids to different secrets', () => {
    const other = Buffer.from(SECRET);
    other[31] = 0xff;
    assert.notEqual(new PiiKey(other).id, new PiiKey(SECRET).id);
    const ids = new Set(Array.from({ length: 50 }, () => new PiiKey(randomBytes(32)).id));
    assert.equal(ids.size, 50);
  });

  it('does not change when the caller later overwrites the buffer it was built from', () => {
    const buffer = Buffer.from(SECRET);
    const key = new PiiKey(buffer);
    const before = key.derive('test').toString('hex');
    buffer.fill(0);
    assert.equal(key.derive('test').toString('hex'), before);
  });

  it('serialises to JSON as its id and status only', () => {
    const key = new PiiKey(SECRET);
    assert.equal(JSON.stringify(key), `{"id":"${key.id}","status":"active"}`);
    assert.equal(JSON.stringify({ config: { piiKey: key } }), `{"config":{"piiKey":{"id":"${key.id}","status":"active"}}}`);
  });

  it('never shows its secret through JSON.stringify or util.inspect', () => {
    const key = new PiiKey(SECRET);
    const views = [
      JSON.stringify(key),
      JSON.stringify({ key }),
      inspect(key),
      inspect({ nested: { key } }, { depth: Infinity }),
      inspect(key, { showHidden: true, depth: Infinity }),
      inspect(key, { customInspect: false, showHidden: true, depth: Infinity }),
      String(key),
      `${Object.keys(key).join(',')}`,
    ];
    for (const view of views) {
      for (const spelling of spellings(SECRET)) {
        assert.ok(!view.includes(spelling), `secret visible in ${view}`);
      }
    }
    assert.equal(inspect(key), `PiiKey(${key.id}, active)`);
    assert.deepEqual(Object.keys(key), ['id', 'status', 'publicKey']);
  });

  it('derives different 32-byte sub-keys for different purposes', () => {
    const key = new PiiKey(SECRET);
    const ip = key.derive('mask/hmac/ip');
    const device = key.derive('mask/hmac/device_id');
    assert.equal(ip.length, 32);
    assert.equal(device.length, 32);
    assert.notDeepEqual(ip, device);
    assert.deepEqual(key.derive('mask/hmac/ip'), ip);
    assert.ok(!ip.equals(SECRET));
  });
});

describe('generateKeyText', () => {
  it('returns base64 text of 32 random bytes', () => {
    const text = generateKeyText();
    const bytes = Buffer.from(text, 'base64');
    assert.equal(bytes.length, 32);
    assert.equal(bytes.toString('base64'), text);
  });

  it('returns a different key on each call', () => {
    const keys = new Set(Array.from({ length: 20 }, () => generateKeyText()));
    assert.equal(keys.size, 20);
  });

  it('returns text parsePiiKey accepts, decoding to the same bytes', () => {
    const text = generateKeyText();
    const key = parsePiiKey(text, 'PII_KEY');
    assert.equal(key.id, new PiiKey(Buffer.from(text, 'base64')).id);
  });
});
