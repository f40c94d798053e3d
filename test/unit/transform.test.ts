import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loginBody, queueMessage, shapeFields } from '../helpers/fixtures.js';
import { KeyRing, PiiKey } from '../../src/transform/key.js';
import { HmacMasker } from '../../src/transform/mask.js';
import { openBody } from '../../src/transform/seal.js';
import { describeShape } from '../../src/transform/shape.js';
import { transform, utcDate, type LoginRow, type Outcome } from '../../src/transform/transform.js';

const key = new PiiKey(Buffer.from(Array.from({ length: 32 }, (_, i) => i)));
const masker = new HmacMasker(key);

const USER_ID = '5b4a2c1e-3f8d-4b7a-9c6e-1d2f3a4b5c6d';
const IP = '203.0.113.7';
const DEVICE_ID = '555-12-3456';

type Accepted = Extract<Outcome, { kind: 'accepted' }>;
type Rejected = Extract<Outcome, { kind: 'rejected' }>;

function accept(body: string, overrides: Parameters<typeof queueMessage>[1] = {}): LoginRow {
  const message = queueMessage(body, overrides);
  const outcome = transform(message, masker);
  assert.ok(outcome.kind === 'accepted', `expected accepted, got rejected: ${outcome.kind === 'rejected' ? outcome.reason : ''}`);
  assert.equal(outcome.message, message);
  return (outcome as Accepted).row;
}

function reject(body: string): Rejected {
  const message = queueMessage(body);
  const outcome = transform(message, masker);
  assert.ok(outcome.kind === 'rejected', `expected rejected, got accepted: ${JSON.stringify(outcome.kind === 'accepted' ? outcome.row : null)}`);
  assert.equal(outcome.message, message);
  return outcome as Rejected;
}

describe('transform: accepted messages', () => {
  it('maps every field of a full event to a row, masking ip and device_id', () => {
    assert.deepEqual(accept(loginBody()), {
      user_id: USER_ID,
      device_type: 'ios',
      masked_ip: masker.mask('ip', IP),
      masked_device_id: masker.mask('device_id', DEVICE_ID),
      locale: 'RU',
      app_version: 2_003_000,
      create_date: '2024-01-31',
    });
  });

  it('keeps a null locale as null', () => {
    assert.equal(accept(loginBody({ locale: null })).locale, null);
  });

  it('turns missing optional fields into nulls', () => {
    assert.deepEqual(accept(JSON.stringify({ user_id: 'u-1' })), {
      user_id: 'u-1',
      device_type: null,
      masked_ip: null,
      masked_device_id: null,
      locale: null,
      app_version: null,
      create_date: '2024-01-31',
    });
  });

  it('treats explicit nulls in optional fields as absent', () => {
    const row = accept(loginBody({ device_type: null, ip: null, device_id: null, app_version: null }));
    assert.equal(row.device_type, null);
    assert.equal(row.masked_ip, null);
    assert.equal(row.masked_device_id, null);
    assert.equal(row.app_version, null);
  });

  it('canonicalises ip before masking, so spellings of one address give one token', () => {
    const plain = accept(loginBody({ ip: IP })).masked_ip;
    assert.equal(plain, masker.mask('ip', IP));
    assert.equal(accept(loginBody({ ip: '::ffff:203.0.113.7' })).masked_ip, plain);
    assert.equal(accept(loginBody({ ip: '::FFFF:CB00:7107' })).masked_ip, plain);
    const v6 = accept(loginBody({ ip: '2001:db8::1' })).masked_ip;
    assert.equal(v6, masker.mask('ip', '2001:db8::1'));
    assert.equal(accept(loginBody({ ip: '2001:DB8:0:0:0:0:0:1' })).masked_ip, v6);
    assert.notEqual(v6, plain);
  });

  it('gives repeat logins from one device the same masked_device_id', () => {
    const a = accept(loginBody({ user_id: 'a' }));
    const b = accept(loginBody({ user_id: 'b' }));
    assert.equal(a.masked_device_id, b.masked_device_id);
    assert.notEqual(accept(loginBody({ device_id: '555-12-3457' })).masked_device_id, a.masked_device_id);
  });

  it('ignores unknown extra fields', () => {
    const row = accept(loginBody({ extra: { nested: [1, 2, 3] }, foo: 'bar', another_ip: '198.51.100.1' }));
    assert.deepEqual(Object.keys(row).sort(), ['app_version', 'create_date', 'device_type', 'locale', 'masked_device_id', 'masked_ip', 'user_id']);
    assert.equal(row.user_id, USER_ID);
  });

  it('encodes app_version as an integer', () => {
    assert.equal(accept(loginBody({ app_version: '0.96' })).app_version, 96_000);
    assert.equal(accept(loginBody({ app_version: '3.7' })).app_version, 3_007_000);
    assert.equal(accept(loginBody({ app_version: '2' })).app_version, 2_000_000);
  });

  it('sets create_date to the UTC date of SentTimestamp', () => {
    assert.equal(accept(loginBody(), { sentTimestampMs: Date.UTC(2024, 0, 31, 23, 59, 59) }).create_date, '2024-01-31');
    assert.equal(accept(loginBody(), { sentTimestampMs: Date.UTC(2024, 1, 29, 0, 0, 0) }).create_date, '2024-02-29');
    assert.equal(accept(loginBody(), { sentTimestampMs: Date.UTC(2023, 11, 31, 23, 59, 59, 999) }).create_date, '2023-12-31');
  });

  it('gives each message its own day when consecutive messages straddle midnight', () => {
    const lastMs = Date.UTC(2024, 5, 30, 23, 59, 59, 999);
    const sequence = [lastMs, lastMs + 1, lastMs, lastMs + 1, Date.UTC(1969, 11, 31, 23, 0), Date.UTC(1970, 0, 1)];
    assert.deepEqual(sequence.map(utcDate), ['2024-06-30', '2024-07-01', '2024-06-30', '2024-07-01', '1969-12-31', '1970-01-01']);
  });

  it('uses the UTC date even where the local date differs', () => {
    const previous = process.env.TZ;
    try {
      process.env.TZ = 'Asia/Tokyo';
      const lateJan31 = Date.UTC(2024, 0, 31, 23, 59, 59);
      assert.equal(new Date(lateJan31).getDate(), 1, 'precondition: it is already 1 February in Tokyo');
      assert.equal(accept(loginBody(), { sentTimestampMs: lateJan31 }).create_date, '2024-01-31');

      process.env.TZ = 'America/Los_Angeles';
      const earlyJan1 = Date.UTC(2024, 0, 1, 0, 0, 1);
      assert.equal(new Date(earlyJan1).getFullYear(), 2023, 'precondition: it is still 2023 in Los Angeles');
      assert.equal(accept(loginBody(), { sentTimestampMs: earlyJan1 }).create_date, '2024-01-01');
    } finally {
      if (previous === undefined) delete process.env.TZ;
      else process.env.TZ = previous;
    }
  });

  it('leaves create_date null when SentTimestamp is missing', () => {
    assert.equal(accept(loginBody(), { sentTimestampMs: undefined }).create_date, null);
    assert.equal(utcDate(undefined), null);
    assert.equal(utcDate(Number.NaN), null);
    assert.equal(utcDate(8.64e15 + 1), null);
  });

  it('accepts a user_id of 128 code points even when it is 256 UTF-16 units', () => {
    const emoji = '😀'.repeat(128);
    assert.equal(emoji.length, 256);
    assert.equal(accept(loginBody({ user_id: emoji })).user_id, emoji);
  });

  it('accepts text at its length limits', () => {
    const row = accept(loginBody({ user_id: 'u'.repeat(128), device_type: 'd'.repeat(32), locale: 'l'.repeat(32) }));
    assert.equal(row.user_id.length, 128);
    assert.equal(row.device_type, 'd'.repeat(32));
    assert.equal(row.locale, 'l'.repeat(32));
    assert.match(accept(loginBody({ device_id: '9'.repeat(256) })).masked_device_id ?? '', /^hmac:/);
  });
});

describe('transform: rejected messages', () => {
  it("rejects the exercise's malformed message because user_id is missing", () => {
    const outcome = reject(JSON.stringify({ foo: 'oops_wrong_msg_type', bar: '123' }));
    assert.equal(outcome.reason, 'user_id is required');
  });

  it('rejects a body that is not JSON', () => {
    assert.equal(reject('not json at all').reason, 'body is not valid JSON');
    assert.equal(reject('').reason, 'body is not valid JSON');
    assert.equal(reject('{"user_id": "u",}').reason, 'body is not valid JSON');
  });

  for (const [body, what] of [
    ['[]', 'array'],
    [JSON.stringify([{ user_id: 'u' }]), 'array'],
    ['"user_id"', 'string'],
    ['42', 'number'],
    ['null', 'null'],
    ['true', 'boolean'],
  ] as const) {
    it(`rejects the JSON ${what} ${body} as not an object`, () => {
      const outcome = reject(body);
      assert.match(outcome.reason, /^message /);
      assert.match(outcome.reason, new RegExp(`expected object, received ${what}`));
      assert.equal(outcome.shape.json, what);
    });
  }

  const invalid: [label: string, fields: Record<string, unknown>, reason: string | RegExp][] = [
    ['user_id missing', { user_id: undefined }, 'user_id is required'],
    ['user_id null', { user_id: null }, /^user_id /],
    ['user_id empty', { user_id: '' }, 'user_id is empty'],
    ['user_id a number', { user_id: 12345 }, /^user_id .*number/],
    ['user_id of 129 characters', { user_id: 'u'.repeat(129) }, 'user_id is longer than 128 characters'],
    ['user_id of 129 emoji', { user_id: '😀'.repeat(129) }, 'user_id is longer than 128 characters'],
    ['device_type of 33 characters', { device_type: 'd'.repeat(33) }, 'device_type is longer than 32 characters'],
    ['locale of 33 characters', { locale: 'l'.repeat(33) }, 'locale is longer than 32 characters'],
    ['locale a number', { locale: 7 }, /^locale .*number/],
    ['device_id of 257 characters', { device_id: '9'.repeat(257) }, 'device_id is longer than 256 characters'],
    ['ip not an address', { ip: 'not-an-ip' }, 'ip is not an IPv4 or IPv6 address'],
    ['ip with a leading zero', { ip: '01.2.3.4' }, 'ip is not an IPv4 or IPv6 address'],
    ['ip with a zone id', { ip: 'fe80::1%eth0' }, 'ip is not an IPv4 or IPv6 address'],
    ['ip a number', { ip: 3405803783 }, /^ip .*number/],
    ['app_version with a suffix', { app_version: '2.3.0-beta' }, 'app_version must be up to three dot-separated numbers, such as 2.3.0 or 0.96'],
    ['app_version with a minor of 1000', { app_version: '1.1000' }, 'app_version minor and patch must be below 1000'],
    ['app_version a number', { app_version: 2 }, /^app_version .*number/],
    ['user_id with a NUL', { user_id: 'a\u0000b' }, 'user_id contains a NUL character'],
    ['device_type with a NUL', { device_type: 'ios\u0000' }, 'device_type contains a NUL character'],
  ];
  for (const [label, fields, reason] of invalid) {
    it(`rejects ${label}, naming the field`, () => {
      const outcome = reject(loginBody(fields));
      if (typeof reason === 'string') assert.equal(outcome.reason, reason);
      else assert.match(outcome.reason, reason);
    });
  }

  it('rejects a lone surrogate, which Postgres would silently replace', () => {
    assert.equal(reject(String.raw`{"user_id":"\ud800"}`).reason, 'user_id is not well-formed Unicode');
    assert.equal(reject(String.raw`{"user_id":"u","locale":"R\udc00"}`).reason, 'locale is not well-formed Unicode');
  });

  it('names every failing field in one reason', () => {
    const outcome = reject(loginBody({ user_id: '', ip: 'nope', locale: 'l'.repeat(33) }));
    assert.equal(outcome.reason, 'user_id is empty; ip is not an IPv4 or IPv6 address; locale is longer than 32 characters');
  });

  it('never puts the raw ip or device_id in a reason', () => {
    const bodies = [
      loginBody({ user_id: undefined }),
      loginBody({ ip: '203.0.113.700' }),
      loginBody({ ip: '2001:db8::1%eth0' }),
      loginBody({ ip: 203_0113_7 }),
      loginBody({ device_id: `${DEVICE_ID}-${'x'.repeat(300)}` }),
      loginBody({ device_id: 5551234567 }),
      loginBody({ device_id: `${DEVICE_ID}\u0000` }),
      loginBody({ app_version: '1.2.3.4', ip: IP }),
    ];
    for (const body of bodies) {
      const { reason } = reject(body);
      for (const raw of [IP, '203.0.113.700', '2001:db8::1', DEVICE_ID, '5551234567', '20301137']) {
        assert.ok(!reason.includes(raw), `reason ${JSON.stringify(reason)} contains ${raw}`);
      }
    }
  });
});

describe('transform: sealed bodies of rejected messages', () => {
  const ring = new KeyRing([key], 'PII_KEY');

  /** Everything a rejection stores in clear, as one text. */
  function clearText(outcome: Rejected): string {
    return JSON.stringify({ reason: outcome.reason, bytes: outcome.bytes, token: outcome.token, shape: outcome.shape, keyId: outcome.sealed.keyId });
  }

  function opened(outcome: Rejected): string {
    const result = openBody(outcome.message.messageId, outcome.sealed, outcome.token, ring, undefined);
    assert.equal(result.kind, 'opened', result.kind === 'refused' ? result.reason : '');
    return (result as { body: string }).body;
  }

  // Each of these stored a raw value when rejected bodies were scrubbed as text.
  const escaped = [
    ['an address with a port outside an ip key', '{"user_id":"","remote_addr":"203.0.113.9:443","ip":"198.51.100.1"}', ['203.0.113.9', '198.51.100.1']],
    ['a URL with a port', 'http://203.0.113.31:8080/login', ['203.0.113.31']],
    ['an IPv4-mapped address with a port', '::ffff:203.0.113.37:443', ['203.0.113.37']],
    ['a log line', 'client 203.0.113.21:51234 connected; device_id={"serial":"SECRETDEV-A1"}', ['203.0.113.21', 'SECRETDEV-A1']],
    ['a Ruby hash', '{"device_id"=>"SECRETDEV-E5", "ip"=>"198.51.100.5"}', ['SECRETDEV-E5', '198.51.100.5']],
    ['an escaped key in text', String.raw`oops "\u0064evice_id": "SECRETDEV-U1"`, ['SECRETDEV-U1']],
    ['escaped JSON inside text', String.raw`payload=\"device_id\":\"SECRETDEV-X\"`, ['SECRETDEV-X']],
    ['camelCase keys', '{"user_id":"","deviceId":"SECRETDEV-C3","ipAddress":"198.51.100.77"}', ['SECRETDEV-C3', '198.51.100.77']],
    ['an address as a key', '{"203.0.113.9": 1}', ['203.0.113.9']],
    ['a nested device id', '{"user_id":7,"device_id":{"serial":"SECRETDEV-N2"}}', ['SECRETDEV-N2']],
  ] as const;
  for (const [what, body, raws] of escaped) {
    it(`keeps nothing raw in clear for ${what}, and seals the original exactly`, () => {
      const outcome = reject(body);
      for (const raw of raws) assert.ok(!clearText(outcome).includes(raw), `${raw} in ${clearText(outcome)}`);
      assert.ok(!Buffer.from(outcome.sealed.sealed).toString('latin1').includes(raws[0]), 'the sealed bytes are not the body');
      assert.equal(opened(outcome), body);
    });
  }

  it('seals a JSON body nested deeper than JSON.stringify can write, without leaking or throwing', () => {
    const inner = '{"device_id":{"serial":"SECRETDEV-G7"},"ip":"203.0.113.70"}';
    const body = '{"a":'.repeat(100_000) + inner + '}'.repeat(100_000);
    const outcome = reject(body);
    assert.equal(outcome.reason, 'user_id is required');
    assert.ok(!clearText(outcome).includes('SECRETDEV-G7') && !clearText(outcome).includes('203.0.113.70'));
    assert.deepEqual(outcome.shape, { json: 'object', fields: shapeFields({}), otherKeys: 1 });
    assert.equal(opened(outcome), body);
    assert.equal(reject('['.repeat(100_000) + ']'.repeat(100_000)).shape.json, 'array');
    assert.equal(reject('['.repeat(100_000)).reason, 'body is not valid JSON');
  });

  it("describes the exercise's malformed message by its shape: no login field, two other keys", () => {
    const outcome = reject(JSON.stringify({ foo: 'oops_wrong_msg_type', bar: '123' }));
    assert.deepEqual(outcome.shape, { json: 'object', fields: shapeFields({}), otherKeys: 2 });
    assert.equal(outcome.bytes, 41);
    assert.equal(describeShape(outcome.shape), 'object: none of the 6 login fields; 2 other keys');
  });

  it('shows the values of user_id, device_type, locale and app_version only when their column would take them', () => {
    const outcome = reject(loginBody({ ip: '203.0.113.700', device_id: `${DEVICE_ID}\u0000` }));
    assert.deepEqual(outcome.shape, {
      json: 'object',
      fields: shapeFields({
        user_id: { type: 'string', length: 36, value: USER_ID },
        app_version: { type: 'string', length: 5, value: '2.3.0' },
        device_type: { type: 'string', length: 3, value: 'ios' },
        ip: { type: 'string', length: 13 },
        locale: { type: 'string', length: 2, value: 'RU' },
        device_id: { type: 'string', length: 12 },
      }),
      otherKeys: 0,
    });
    const odd = reject(JSON.stringify({ user_id: 'u'.repeat(129), device_type: 7, locale: null, app_version: '2.3.0 from 203.0.113.7', ip: [IP] }));
    assert.deepEqual(odd.shape, {
      json: 'object',
      fields: shapeFields({
        user_id: { type: 'string', length: 129 },
        device_type: { type: 'number' },
        locale: { type: 'null' },
        app_version: { type: 'string', length: 22 },
        ip: { type: 'array', length: 1 },
      }),
      otherKeys: 0,
    });
    assert.ok(!clearText(odd).includes(IP));
    // app_version shows as the number user_logins stores reads back, not as sent: leading zeros
    // (room for anything) are gone.
    const padded = reject(JSON.stringify({ user_id: '', app_version: '0000000203.0000000000.0000000113' }));
    assert.deepEqual(padded.shape.json === 'object' ? padded.shape.fields.app_version : undefined, { type: 'string', length: 32, value: '203.0.113' });
  });

  for (const [body, type] of [
    ['[]', 'array'],
    ['"user_id"', 'string'],
    ['42', 'number'],
    ['null', 'null'],
    ['true', 'boolean'],
    ['not json', 'invalid'],
  ] as const) {
    it(`gives the JSON ${type} ${body} only its type`, () => {
      assert.deepEqual(reject(body).shape, { json: type });
    });
  }

  it('gives equal bodies equal tokens of this key, and different bodies different ones', () => {
    const a = reject('{"ip":"203.0.113.7"}');
    const b = reject('{"ip":"203.0.113.7"}');
    assert.equal(a.token, b.token);
    assert.match(a.token, new RegExp(`^body:${masker.keyId}:[A-Za-z0-9_-]{43}$`));
    assert.notEqual(reject('{"ip":"203.0.113.8"}').token, a.token);
    assert.notEqual(new HmacMasker(new PiiKey(Buffer.alloc(32, 9))).bodies.token('{"ip":"203.0.113.7"}'), a.token);
    assert.notDeepEqual(a.sealed.sealed, b.sealed.sealed, 'a fresh nonce for every seal');
  });

  it('refuses to open a body under another message id, altered, or with another key', () => {
    const outcome = reject('{"ip":"203.0.113.7"}');
    assert.equal(openBody('another-id', outcome.sealed, outcome.token, ring, undefined).kind, 'refused');
    const altered = Buffer.from(outcome.sealed.sealed);
    altered[20] = (altered[20] ?? 0) ^ 1;
    assert.equal(openBody(outcome.message.messageId, { ...outcome.sealed, sealed: altered }, outcome.token, ring, undefined).kind, 'refused');
    const otherRing = new KeyRing([new PiiKey(Buffer.alloc(32, 9), { id: masker.keyId })], 'PII_KEY');
    const refused = openBody(outcome.message.messageId, outcome.sealed, outcome.token, otherRing, undefined);
    assert.equal(refused.kind, 'refused');
    assert.ok(refused.kind === 'refused' && !refused.reason.includes('203.0.113.7'));
  });

  it('rejects a 1 MiB body of colon-dense text about as fast as 1 MiB of plain letters', () => {
    // Scanning such a body for addresses once took half a minute; sealing is linear.
    const colons = '"1::2::3 '.repeat(Math.ceil(1_048_576 / 9)).slice(0, 1_048_576);
    const letters = 'a'.repeat(1_048_576);
    const fastest = (body: string) => {
      let best = Infinity;
      for (let i = 0; i < 5; i += 1) {
        const started = performance.now();
        reject(body);
        best = Math.min(best, performance.now() - started);
      }
      return best;
    };
    const ratio = fastest(colons) / Math.max(fastest(letters), 0.5);
    assert.ok(ratio < 10, `colon-dense body took ${ratio.toFixed(1)} times as long as plain letters`);
    const outcome = reject(colons);
    assert.equal(outcome.bytes, 1_048_576);
    assert.equal(opened(outcome), colons);
  });
});
