/**
 * Properties of transform() over generated input: it never throws, every message ends as exactly
 * one outcome, masked fields are tokens, and the raw ip and device_id never survive.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { PiiKey } from '../../src/transform/key.js';
import { HmacMasker } from '../../src/transform/mask.js';
import { transform, type Outcome } from '../../src/transform/transform.js';
import { queueMessage } from '../helpers/fixtures.js';

const masker = new HmacMasker(new PiiKey(Buffer.from(Array.from({ length: 32 }, (_, i) => 255 - i))));
const TOKEN = /^hmac:[0-9a-f]{8}:[A-Za-z0-9_-]{43}$/;
/** Fixed, so that a failure can be replayed; fast-check prints it with the counterexample. */
const SEED = 20_240_131;

/** transform() on `body`, with the checks every outcome must pass. */
function outcomeOf(body: string): Outcome {
  let outcome: Outcome | undefined;
  assert.doesNotThrow(() => {
    outcome = transform(queueMessage(body), masker);
  });
  assert.ok(outcome !== undefined);
  if (outcome.kind === 'accepted') {
    assert.deepEqual(Object.keys(outcome).sort(), ['kind', 'message', 'row']);
    const { masked_ip, masked_device_id, user_id } = outcome.row;
    assert.ok(masked_ip === null || TOKEN.test(masked_ip), `masked_ip ${masked_ip}`);
    assert.ok(masked_device_id === null || TOKEN.test(masked_device_id), `masked_device_id ${masked_device_id}`);
    assert.equal(typeof user_id, 'string');
    assert.ok(user_id.length > 0);
  } else {
    assert.equal(outcome.kind, 'rejected');
    assert.deepEqual(Object.keys(outcome).sort(), ['bytes', 'kind', 'message', 'reason', 'sealed', 'shape', 'token']);
    assert.equal(typeof outcome.reason, 'string');
    assert.ok(outcome.reason.length > 0, 'a rejection says why');
    assert.equal(outcome.bytes, Buffer.byteLength(body, 'utf8'));
    assert.equal(outcome.sealed.keyId, masker.keyId);
  }
  return outcome;
}

/** Everything a rejection stores in clear, as one text. */
function clearText(outcome: Extract<Outcome, { kind: 'rejected' }>): string {
  return JSON.stringify({ reason: outcome.reason, bytes: outcome.bytes, token: outcome.token, shape: outcome.shape, keyId: outcome.sealed.keyId });
}

/** Any UTF-16 code unit, lone surrogates included. */
const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((n) => String.fromCharCode(n));

const anyString = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.string({ unit: codeUnit, maxLength: 200 }),
  fc.string({ unit: fc.constantFrom('{', '}', '[', ']', '"', ':', ',', '\\', 'u', '0', '.', '-', ' ', 'i', 'p'), maxLength: 200 }),
);

/** JSON text of values fast-check makes, where JSON.stringify can write them at all. */
const anythingAsJson = fc.anything({ withBigInt: false }).chain((value) => {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    text = undefined;
  }
  return text === undefined ? fc.constant('null') : fc.constant(text);
});

const version = fc.tuple(fc.nat(2_000), fc.nat(2_000), fc.nat(2_000)).map((parts) => parts.join('.'));
const deviceId = fc
  .tuple(fc.integer({ min: 0, max: 999 }), fc.integer({ min: 0, max: 99 }), fc.integer({ min: 0, max: 9_999 }))
  .map(([a, b, c]) => `${String(a).padStart(3, '0')}-${String(b).padStart(2, '0')}-${String(c).padStart(4, '0')}`);
/** Dotted-quad IPv4. (Legacy forms such as "0" are too short to look for as substrings.) */
const ipv4 = fc.ipV4();

/** A field's value: mostly one a valid event could carry, sometimes anything else. */
const field = <T>(valid: fc.Arbitrary<T>, ...wrong: fc.Arbitrary<unknown>[]) =>
  fc.oneof({ arbitrary: valid as fc.Arbitrary<unknown>, weight: 3 * wrong.length }, ...wrong);

/** Login-shaped objects, each field sometimes right, sometimes of any type, sometimes missing. */
const loginLike = fc.record(
  {
    user_id: field(fc.oneof(fc.uuid(), fc.string({ minLength: 1, maxLength: 128 })), fc.string({ maxLength: 140 }), fc.jsonValue()),
    device_type: field(fc.constantFrom('ios', 'android', null), fc.string({ maxLength: 40 }), fc.jsonValue()),
    ip: field(fc.oneof(ipv4, fc.ipV6(), fc.constant(null)), fc.ipV4Extended(), fc.string({ maxLength: 40 }), fc.jsonValue()),
    locale: field(fc.constantFrom('RU', 'en-US', null), fc.string({ maxLength: 40 }), fc.jsonValue()),
    device_id: field(fc.oneof(deviceId, fc.constant(null)), fc.string({ maxLength: 300 }), fc.jsonValue()),
    app_version: field(fc.oneof(version, fc.constantFrom('2.3.0', '6.02', '1', null)), fc.string({ maxLength: 20 }), fc.jsonValue()),
  },
  { requiredKeys: [] },
);

describe('transform: properties', () => {
  it('never throws on arbitrary strings and returns exactly one outcome', () => {
    fc.assert(
      fc.property(anyString, (body) => {
        outcomeOf(body);
      }),
      { seed: SEED, numRuns: 3_000 },
    );
  });

  it('never throws on arbitrary JSON text and values', () => {
    fc.assert(
      fc.property(fc.oneof(fc.json(), fc.jsonValue().map((v) => JSON.stringify(v)), anythingAsJson), (body) => {
        outcomeOf(body);
      }),
      { seed: SEED, numRuns: 1_000 },
    );
  });

  it('on login-shaped objects with any field wrong: one outcome, masked fields are tokens', () => {
    let accepted = 0;
    fc.assert(
      fc.property(loginLike, fc.dictionary(fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 }), (fields, extras) => {
        const outcome = outcomeOf(JSON.stringify({ ...extras, ...fields }));
        if (outcome.kind === 'accepted') accepted += 1;
      }),
      { seed: SEED, numRuns: 1_500 },
    );
    assert.ok(accepted > 150, `only ${accepted} of 1,500 generated events were accepted: the accepted path is barely exercised`);
  });

  it('never lets the raw ip or device_id through, accepted or rejected', () => {
    const kinds = { accepted: 0, rejected: 0 };
    const leaks = (outcome: Outcome, raw: string) =>
      outcome.kind === 'accepted' ? JSON.stringify(outcome.row).includes(raw) : clearText(outcome).includes(raw);
    fc.assert(
      fc.property(
        ipv4,
        deviceId,
        loginLike,
        fc.dictionary(fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 }),
        (ip, device, fields, extras) => {
          const outcome = outcomeOf(JSON.stringify({ ...extras, ...fields, ip, device_id: device }));
          kinds[outcome.kind] += 1;
          assert.ok(!leaks(outcome, ip), `raw ip ${ip} in the ${outcome.kind} outcome`);
          assert.ok(!leaks(outcome, device), `raw device_id ${device} in the ${outcome.kind} outcome`);
        },
      ),
      { seed: SEED, numRuns: 1_500 },
    );
    assert.ok(kinds.accepted > 150 && kinds.rejected > 150, `outcomes ${JSON.stringify(kinds)}: both paths must be exercised`);
  });

  it('never lets them through in bodies too deep to write back as JSON', () => {
    fc.assert(
      fc.property(ipv4, deviceId, loginLike, fc.integer({ min: 12_000, max: 30_000 }), (ip, device, fields, depth) => {
        const body = '['.repeat(depth) + JSON.stringify({ ...fields, ip, device_id: device }) + ']'.repeat(depth);
        const outcome = outcomeOf(body);
        assert.equal(outcome.kind, 'rejected');
        assert.ok(outcome.kind === 'rejected' && !clearText(outcome).includes(ip), `raw ip ${ip} in what a rejection keeps in clear`);
        assert.ok(outcome.kind === 'rejected' && !clearText(outcome).includes(device), `raw device_id ${device} in what a rejection keeps in clear`);
      }),
      { seed: SEED, numRuns: 40 },
    );
  });
});
