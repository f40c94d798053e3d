import { aessiv } from '@noble/ciphers/aes.js';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { generateVaultKey, parseKeyRing, PiiKey } from '../../src/transform/key.js';
import { createMasker, HmacMasker, SIV_MAX_VALUE_BYTES, SivMasker, type VaultEntry } from '../../src/transform/mask.js';
import { openBody } from '../../src/transform/seal.js';
import { loadSealedBox } from '../../src/transform/sealed-box.js';
import { transform } from '../../src/transform/transform.js';
import { loginBody, queueMessage } from '../helpers/fixtures.js';

const hex = (text: string) => Uint8Array.from(Buffer.from(text.replace(/\s+/g, ''), 'hex'));

describe('AES-SIV (RFC 5297 Appendix A test vectors)', () => {
  it('A.1 deterministic authenticated encryption', () => {
    const key = hex('fffefdfc fbfaf9f8 f7f6f5f4 f3f2f1f0 f0f1f2f3 f4f5f6f7 f8f9fafb fcfdfeff');
    const ad = hex('10111213 14151617 18191a1b 1c1d1e1f 20212223 24252627');
    const plaintext = hex('11223344 55667788 99aabbcc ddee');
    const expected = '85632d07c6e8f37f950acd320a2ecc93' + '40c02b9690c4dc04daef7f6afe5c';
    assert.equal(Buffer.from(aessiv(key, ad).encrypt(plaintext)).toString('hex'), expected);
    assert.deepEqual(aessiv(key, ad).decrypt(hex(expected)), plaintext);
  });

  it('A.2 nonce-based authenticated encryption with several associated data', () => {
    const key = hex('7f7e7d7c 7b7a7978 77767574 73727170 40414243 44454647 48494a4b 4c4d4e4f');
    const ad1 = hex('00112233 44556677 8899aabb ccddeeff deaddada deaddada ffeeddcc bbaa9988 77665544 33221100');
    const ad2 = hex('10203040 50607080 90a0');
    const nonce = hex('09f91102 9d74e35b d84156c5 635688c0');
    const plaintext = hex('74686973 20697320 736f6d65 20706c61 696e7465 78742074 6f20656e 63727970 74207573 696e6720 5349562d 414553');
    const expected =
      '7bdb6e3b432667eb06f4d14bff2fbd0f' +
      'cb900f2fddbe404326601965c889bf17dba77ceb094fa663b7a3f748ba8af829ea64ad544a272e9c485b62a3fd5c0d';
    assert.equal(Buffer.from(aessiv(key, ad1, ad2, nonce).encrypt(plaintext)).toString('hex'), expected);
  });
});

describe('SivMasker', () => {
  const key = new PiiKey(randomBytes(32));

  it('is deterministic per key, differs between keys and between columns', () => {
    const a = new SivMasker(key);
    assert.equal(a.mask('ip', '203.0.113.7'), new SivMasker(key).mask('ip', '203.0.113.7'));
    assert.notEqual(a.mask('ip', '203.0.113.7'), new SivMasker(new PiiKey(randomBytes(32))).mask('ip', '203.0.113.7'));
    assert.notEqual(a.mask('ip', '555-12-3456').split(':')[2], a.mask('device_id', '555-12-3456').split(':')[2]);
    assert.match(a.mask('ip', '203.0.113.7'), new RegExp(`^siv:${key.id}:[A-Za-z0-9_-]+$`));
  });

  it(`fits varchar(256) for ${SIV_MAX_VALUE_BYTES}-byte values with the longest key id`, () => {
    const longId = new SivMasker(new PiiKey(randomBytes(32), { id: 'x'.repeat(16) }));
    assert.equal(longId.mask('device_id', 'é'.repeat(SIV_MAX_VALUE_BYTES / 2)).length, 256);
    assert.ok(longId.mask('device_id', 'd'.repeat(SIV_MAX_VALUE_BYTES + 1)).length > 256);
  });

  it('rejects, with a reason, a device_id too long for siv masking, and accepts one at the limit', () => {
    const masker = new SivMasker(key);
    const atLimit = transform(queueMessage(loginBody({ device_id: 'é'.repeat(80) })), masker);
    assert.equal(atLimit.kind, 'accepted');
    const over = transform(queueMessage(loginBody({ device_id: 'd'.repeat(161) })), masker);
    assert.equal(over.kind, 'rejected');
    assert.equal(over.kind === 'rejected' ? over.reason : '', 'device_id is longer than 160 bytes, the most siv masking can store');
    assert.equal(transform(queueMessage(loginBody({ device_id: 'd'.repeat(256) })), new HmacMasker(key)).kind, 'accepted');
  });
});

describe('VaultMasker', () => {
  it('writes hmac tokens and seals originals that only the private key opens', async () => {
    const { holder } = generateVaultKey('v1');
    const ring = parseKeyRing(JSON.stringify([holder]), 'PII_KEYS');
    const masker = await createMasker('vault', ring.active);
    const vault: VaultEntry[] = [];
    const token = masker.mask('ip', '203.0.113.7', vault);
    assert.equal(token, new HmacMasker(ring.active).mask('ip', '203.0.113.7'));
    assert.equal(vault.length, 1);
    const [entry] = vault;
    assert.equal(entry?.token, token);
    assert.equal(entry?.field, 'ip');
    assert.ok(!Buffer.from(entry?.sealed ?? []).toString('latin1').includes('203.0.113.7'));
    const box = await loadSealedBox();
    const opened = box.open(entry?.sealed ?? new Uint8Array(), ring.active.publicKey ?? new Uint8Array(), ring.active.privateKey() ?? new Uint8Array());
    assert.equal(Buffer.from(opened).toString('utf8'), '203.0.113.7');

    const outcome = transform(queueMessage(loginBody()), masker);
    assert.equal(outcome.kind, 'accepted');
    assert.deepEqual(outcome.vault?.map((v) => v.field), ['ip', 'device_id']);
    // A rejected body is sealed whole to the public key: the pipeline cannot open it, holders can.
    const body = '{"ip": "198.51.100.1", "device_id": "555-12-3456"';
    const rejected = transform(queueMessage(body), masker);
    assert.ok(rejected.kind === 'rejected');
    assert.equal(rejected.sealed.scheme, 'box');
    const pipelineRing = parseKeyRing(JSON.stringify([{ ...holder, private_key: undefined }]), 'PII_KEYS');
    assert.equal(openBody(rejected.message.messageId, rejected.sealed, rejected.token, pipelineRing, box).kind, 'refused');
    assert.deepEqual(openBody(rejected.message.messageId, rejected.sealed, rejected.token, ring, box), { kind: 'opened', body });
    assert.equal(openBody('another-id', rejected.sealed, rejected.token, ring, box).kind, 'refused');
    // Anyone with the public key can seal a body; without the secret its token cannot match.
    const forged = { ...rejected.sealed, sealed: box.seal(Buffer.concat([Buffer.from([0, 0, 0, rejected.message.messageId.length]), Buffer.from(rejected.message.messageId), Buffer.from('{"user_id":"forged"}')]), ring.active.publicKey ?? new Uint8Array()) };
    const refused = openBody(rejected.message.messageId, forged, rejected.token, ring, box);
    assert.equal(refused.kind, 'refused');
    assert.match(refused.kind === 'refused' ? refused.reason : '', /does not match its body_token/);
    assert.equal(openBody(rejected.message.messageId, rejected.sealed, null, ring, box).kind, 'refused', 'no token, nothing to check against');
  });
});
