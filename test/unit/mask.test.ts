import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { PiiKey } from '../../src/transform/key.js';
import { HmacMasker, PII_FIELDS } from '../../src/transform/mask.js';

const SECRET = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
const TOKEN = /^hmac:[0-9a-f]{8}:[A-Za-z0-9_-]{43}$/;

describe('HmacMasker', () => {
  it('masks to hmac:<key id>:<43 base64url characters>', () => {
    const masker = new HmacMasker(new PiiKey(SECRET));
    for (const field of PII_FIELDS) {
      for (const value of ['203.0.113.7', '2001:db8::1', '555-12-3456', '', 'é', 'x'.repeat(10_000)]) {
        const token = masker.mask(field, value);
        assert.match(token, TOKEN);
        assert.ok(token.length <= 256, `token of ${token.length} characters`);
      }
    }
  });

  it('gives a known token for a known key, so tokens stay comparable across releases', () => {
    const masker = new HmacMasker(new PiiKey(SECRET));
    assert.equal(masker.keyId, '69e2e1d2');
    assert.equal(masker.mask('ip', '203.0.113.7'), 'hmac:69e2e1d2:khlfHUA49IKfg3hkQ2gOuP6TNYfXD9VhsBB71qQYu64');
    assert.equal(masker.mask('device_id', '555-12-3456'), 'hmac:69e2e1d2:t3H3wwH1W6JXW2vKacXEUVv54yQTEkWsPDXts8fz0uA');
  });

  it('is deterministic: same key, field and value give the same token', () => {
    const masker = new HmacMasker(new PiiKey(SECRET));
    assert.equal(masker.mask('ip', '203.0.113.7'), masker.mask('ip', '203.0.113.7'));
    assert.equal(masker.mask('device_id', '555-12-3456'), masker.mask('device_id', '555-12-3456'));
  });

  it('gives the same tokens from two maskers built from two keys with the same bytes', () => {
    const a = new HmacMasker(new PiiKey(Buffer.from(SECRET)));
    const b = new HmacMasker(new PiiKey(Buffer.from(SECRET.toString('base64'), 'base64')));
    assert.equal(a.keyId, b.keyId);
    assert.equal(a.mask('ip', '198.51.100.23'), b.mask('ip', '198.51.100.23'));
    assert.equal(a.mask('device_id', '777-88-9999'), b.mask('device_id', '777-88-9999'));
  });

  it('gives different tokens, with different key ids inside, for different keys', () => {
    const keyA = new PiiKey(SECRET);
    const keyB = new PiiKey(randomBytes(32));
    const a = new HmacMasker(keyA).mask('ip', '203.0.113.7');
    const b = new HmacMasker(keyB).mask('ip', '203.0.113.7');
    assert.notEqual(a, b);
    assert.equal(a.split(':')[1], keyA.id);
    assert.equal(b.split(':')[1], keyB.id);
    assert.notEqual(a.split(':')[2], b.split(':')[2]);
  });

  it('keeps fields apart: the same text masked as ip and as device_id gives unrelated tokens', () => {
    const masker = new HmacMasker(new PiiKey(SECRET));
    const asIp = masker.mask('ip', '10.0.0.1');
    const asDevice = masker.mask('device_id', '10.0.0.1');
    assert.notEqual(asIp, asDevice);
    assert.notEqual(asIp.split(':')[2], asDevice.split(':')[2]);
  });

  it('gives different tokens for values that differ in one character', () => {
    const masker = new HmacMasker(new PiiKey(SECRET));
    assert.notEqual(masker.mask('ip', '203.0.113.7'), masker.mask('ip', '203.0.113.8'));
    assert.notEqual(masker.mask('device_id', '555-12-3456'), masker.mask('device_id', '555-12-3457'));
  });

  it('never contains the value it masks', () => {
    const masker = new HmacMasker(new PiiKey(SECRET));
    for (const value of ['203.0.113.7', '2001:db8::1', '555-12-3456', 'device-ABCDEF-0123456789']) {
      for (const field of PII_FIELDS) {
        assert.ok(!masker.mask(field, value).includes(value), `${field} token contains ${value}`);
      }
    }
  });
});
