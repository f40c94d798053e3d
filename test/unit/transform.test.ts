import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loginBody, queueMessage } from '../helpers/fixtures.js';
import { PiiKey } from '../../src/transform/key.js';
import { HmacMasker } from '../../src/transform/mask.js';
import { transform, utcDate, type LoginRow, type Outcome } from '../../src/transform/transform.js';

const masker = new HmacMasker(new PiiKey(Buffer.from(Array.from({ length: 32 }, (_, i) => i))));

const USER_ID = '5b4a2c1e-3f8d-4b7a-9c6e-1d2f3a4b5c6d';
const IP = '203.0.113.7';
const DEVICE_ID = '555-12-3456';
const TOKEN = /hmac:[0-9a-f]{8}:[A-Za-z0-9_-]{43}/g;

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
    assert.equal(outcome.maskedBody, '{"foo":"oops_wrong_msg_type","bar":"123"}');
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
      assert.equal(outcome.maskedBody, body);
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

describe('transform: masked bodies of rejected messages', () => {
  function assertNoRaw(maskedBody: string, raws: readonly string[]): void {
    for (const raw of raws) assert.ok(!maskedBody.includes(raw), `masked body contains ${raw}: ${maskedBody}`);
  }

  it('masks ip and device_id with exactly the tokens accepted rows get', () => {
    const outcome = reject(loginBody({ user_id: undefined }));
    assertNoRaw(outcome.maskedBody, [IP, DEVICE_ID]);
    assert.deepEqual(JSON.parse(outcome.maskedBody), {
      app_version: '2.3.0',
      device_type: 'ios',
      ip: masker.mask('ip', IP),
      locale: 'RU',
      device_id: masker.mask('device_id', DEVICE_ID),
    });
    // The same event, accepted, carries the same tokens: analysts can join rejected rows to user_logins.
    const row = accept(loginBody());
    assert.ok(outcome.maskedBody.includes(row.masked_ip ?? '<none>'));
    assert.ok(outcome.maskedBody.includes(row.masked_device_id ?? '<none>'));
  });

  it('masks a non-canonical ip under its canonical token', () => {
    const outcome = reject(loginBody({ user_id: undefined, ip: '::ffff:203.0.113.7' }));
    assert.equal((JSON.parse(outcome.maskedBody) as { ip: unknown }).ip, masker.mask('ip', IP));
  });

  it('masks the ip and device_id that made the message invalid', () => {
    const outcome = reject(loginBody({ ip: '203.0.113.700', device_id: `${DEVICE_ID}\u0000` }));
    assertNoRaw(outcome.maskedBody, ['203.0.113.700', DEVICE_ID]);
    const parsed = JSON.parse(outcome.maskedBody) as { ip: unknown; device_id: unknown; user_id: unknown };
    assert.equal(parsed.ip, masker.mask('ip', '203.0.113.700'));
    assert.equal(parsed.device_id, masker.mask('device_id', `${DEVICE_ID}\u0000`));
    assert.equal(parsed.user_id, USER_ID);
  });

  it('masks ip and device_id keys nested at any depth, in objects and arrays', () => {
    const body = JSON.stringify({
      user_id: 42,
      meta: {
        sessions: [
          { ip: '198.51.100.23', device_id: '777-88-9999' },
          [{ deeper: { ip: '2001:DB8::1', device_id: '111-22-3333' } }],
        ],
      },
      a: { b: { c: { d: { e: { f: { g: { ip: '192.0.2.1' } } } } } } },
    });
    const outcome = reject(body);
    assertNoRaw(outcome.maskedBody, ['198.51.100.23', '777-88-9999', '2001:DB8::1', '2001:db8::1', '111-22-3333', '192.0.2.1']);
    assert.deepEqual(JSON.parse(outcome.maskedBody), {
      user_id: 42,
      meta: {
        sessions: [
          { ip: masker.mask('ip', '198.51.100.23'), device_id: masker.mask('device_id', '777-88-9999') },
          [{ deeper: { ip: masker.mask('ip', '2001:db8::1'), device_id: masker.mask('device_id', '111-22-3333') } }],
        ],
      },
      a: { b: { c: { d: { e: { f: { g: { ip: masker.mask('ip', '192.0.2.1') } } } } } } },
    });
  });

  it('masks ip and device_id values that are numbers, arrays or objects', () => {
    const body = JSON.stringify({
      ip: { address: IP, port: 443 },
      device_id: 5551234567,
      nested: { ip: [IP, '2001:db8::1'], device_id: { id: DEVICE_ID } },
      other: { ip: 3405803783 },
    });
    const outcome = reject(body);
    assertNoRaw(outcome.maskedBody, [IP, '2001:db8::1', DEVICE_ID, '5551234567', '3405803783']);
    const parsed = JSON.parse(outcome.maskedBody) as {
      ip: unknown;
      device_id: unknown;
      nested: { ip: unknown; device_id: unknown };
      other: { ip: unknown };
    };
    for (const value of [parsed.ip, parsed.device_id, parsed.nested.ip, parsed.nested.device_id, parsed.other.ip]) {
      assert.equal(typeof value, 'string');
      assert.match(value as string, /^hmac:[0-9a-f]{8}:[A-Za-z0-9_-]{43}$/);
    }
  });

  it('keeps null ip and device_id as null in the masked body', () => {
    const outcome = reject(JSON.stringify({ ip: null, device_id: null }));
    assert.equal(outcome.maskedBody, '{"ip":null,"device_id":null}');
  });

  it('scrubs truncated JSON as text, with the same tokens the masker gives', () => {
    const outcome = reject('{"user_id":"u","ip":"203.0.113.7","device_id":"555-12-3456"');
    assert.equal(outcome.reason, 'body is not valid JSON');
    assertNoRaw(outcome.maskedBody, [IP, DEVICE_ID]);
    assert.equal(
      outcome.maskedBody,
      `{"user_id":"u","ip":"${masker.mask('ip', IP)}","device_id":"${masker.mask('device_id', DEVICE_ID)}"`,
    );
  });

  it('scrubs truncated JSON cut inside a value or with unquoted values', () => {
    const cut = reject('{"user_id":"u","device_id":"555-12-3456');
    assertNoRaw(cut.maskedBody, [DEVICE_ID]);
    assert.ok(cut.maskedBody.includes(masker.mask('device_id', DEVICE_ID)));

    const unquoted = reject('{"ip": 203.0.113.7, "device_id" : 5551234567, "user_id": ');
    assertNoRaw(unquoted.maskedBody, [IP, '5551234567']);
    assert.ok(unquoted.maskedBody.includes(masker.mask('ip', IP)));
  });

  it('scrubs values after ip and device_id keys in single quotes, bare, with = or as a list', () => {
    const cases: [body: string, raw: string[], expected: string][] = [
      [`{'ip': '${IP}', 'device_id': 'a1b2c3'}`, [IP, 'a1b2c3'], `{'ip': '${masker.mask('ip', IP)}', 'device_id': '${masker.mask('device_id', 'a1b2c3')}'}`],
      [`ip=${IP}&device_id=zz99&x=1`, [IP, 'zz99'], `ip=${masker.mask('ip', IP)}&device_id=${masker.mask('device_id', 'zz99')}&x=1`],
      ['device_id: abc-77 (retry)', ['abc-77'], `device_id: ${masker.mask('device_id', 'abc-77')} (retry)`],
      ['{"device_id": ["abc","def"]', ['abc', 'def'], `{"device_id": ${masker.mask('device_id', '["abc","def"]')}`],
    ];
    for (const [body, raw, expected] of cases) {
      const outcome = reject(body);
      assert.equal(outcome.reason, 'body is not valid JSON', body);
      assertNoRaw(outcome.maskedBody, raw);
      assert.equal(outcome.maskedBody, expected);
    }
    assert.equal(reject('zip=12345 ship: boat').maskedBody, 'zip=12345 ship: boat', 'only whole ip and device_id keys');
  });

  it('scrubs IPv4 and IPv6 addresses out of plain text', () => {
    const outcome = reject('login failed for 203.0.113.7 (and 2001:DB8:0:0:0:0:0:1) at [2001:db8::2]:443');
    assert.equal(outcome.reason, 'body is not valid JSON');
    assertNoRaw(outcome.maskedBody, [IP, '2001:DB8', '2001:db8']);
    assert.equal(
      outcome.maskedBody,
      `login failed for ${masker.mask('ip', IP)} (and ${masker.mask('ip', '2001:db8::1')}) at [${masker.mask('ip', '2001:db8::2')}]:443`,
    );
  });

  it('leaves text without PII as it was', () => {
    assert.equal(reject('hello, world: 1.2.3 is a version').maskedBody, 'hello, world: 1.2.3 is a version');
  });

  it('returns a rejection, without throwing, for 100000 levels of nested arrays', () => {
    const body = '['.repeat(100_000) + ']'.repeat(100_000);
    const outcome = reject(body);
    assert.match(outcome.reason, /^message /);
    assert.equal(typeof outcome.maskedBody, 'string');
  });

  it('returns a rejection for 100000 unclosed brackets', () => {
    const outcome = reject('['.repeat(100_000));
    assert.equal(outcome.reason, 'body is not valid JSON');
  });

  it('does not leak an ip or device_id buried 100000 levels deep', () => {
    const inner = JSON.stringify({ ip: IP, device_id: DEVICE_ID });
    const body = '{"a":'.repeat(100_000) + inner + '}'.repeat(100_000);
    const outcome = reject(body);
    assert.equal(outcome.reason, 'user_id is required');
    assertNoRaw(outcome.maskedBody, [IP, DEVICE_ID]);
    assert.ok(outcome.maskedBody.includes(masker.mask('ip', IP)));
  });

  it('puts only tokens of this key into masked bodies', () => {
    const outcome = reject(loginBody({ user_id: undefined, nested: { ip: '198.51.100.1' } }));
    const tokens = outcome.maskedBody.match(TOKEN) ?? [];
    assert.equal(tokens.length, 3);
    for (const token of tokens) assert.equal(token.split(':')[1], masker.keyId);
  });

  it('scrubs IPv6 addresses that touch a colon in plain text', () => {
    for (const body of ['ip:2001:db8::1', 'client 2001:db8::1: refused', 'from 10.1.2.3: denied']) {
      const outcome = reject(body);
      assertNoRaw(outcome.maskedBody, ['2001:db8::1', '10.1.2.3']);
    }
    assert.equal(reject('ip:2001:db8::1').maskedBody, `ip:${masker.mask('ip', '2001:db8::1')}`);
    assert.equal(reject('client 2001:db8::1: refused').maskedBody, `client ${masker.mask('ip', '2001:db8::1')}: refused`);
  });

  it('scrubs addresses in JSON strings and keys outside ip and device_id, and upper-case PII keys', () => {
    assert.equal(reject(JSON.stringify(IP)).maskedBody, JSON.stringify(masker.mask('ip', IP)));
    const outcome = reject(JSON.stringify({ client: `seen at ${IP}`, IP: '2001:db8::1', Device_ID: DEVICE_ID, [IP]: 1, list: [IP] }));
    assertNoRaw(outcome.maskedBody, [IP, '2001:db8::1', DEVICE_ID]);
    assert.deepEqual(JSON.parse(outcome.maskedBody), {
      client: `seen at ${masker.mask('ip', IP)}`,
      IP: masker.mask('ip', '2001:db8::1'),
      Device_ID: masker.mask('device_id', DEVICE_ID),
      [masker.mask('ip', IP)]: 1,
      list: [masker.mask('ip', IP)],
    });
  });
});
