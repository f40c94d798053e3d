import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { queueMessage } from '../helpers/fixtures.js';
import { generateSampleEvents, MALFORMED_BODY } from '../../src/embedded/sample-data.js';
import { PiiKey } from '../../src/transform/key.js';
import { HmacMasker } from '../../src/transform/mask.js';
import { transform } from '../../src/transform/transform.js';

interface SampleLogin {
  user_id: string;
  app_version: string;
  device_type: string;
  ip: string;
  locale: string | null;
  device_id: string;
}

const masker = new HmacMasker(new PiiKey(Buffer.from(Array.from({ length: 32 }, (_, i) => i * 3))));

function validLogins(events: readonly { body: string; valid: boolean }[]): SampleLogin[] {
  return events.filter((e) => e.valid).map((e) => JSON.parse(e.body) as SampleLogin);
}

describe('generateSampleEvents', () => {
  const events = generateSampleEvents({ count: 100, seed: 1 });

  it('makes 100 events, exactly one of them the malformed message', () => {
    assert.equal(events.length, 100);
    const invalid = events.filter((e) => !e.valid);
    assert.equal(invalid.length, 1);
    assert.equal(invalid[0]?.body, MALFORMED_BODY);
    assert.equal(MALFORMED_BODY, '{"foo":"oops_wrong_msg_type","bar":"123"}');
    assert.equal(events.filter((e) => e.body === MALFORMED_BODY).length, 1);
  });

  it('makes 99 valid events that transform accepts, and a malformed one it rejects', () => {
    const outcomes = events.map((e) => ({ valid: e.valid, outcome: transform(queueMessage(e.body), masker) }));
    for (const { valid, outcome } of outcomes) {
      if (valid) assert.equal(outcome.kind, 'accepted', outcome.kind === 'rejected' ? outcome.reason : '');
      else assert.equal(outcome.kind, 'rejected');
    }
    assert.equal(outcomes.filter((o) => o.outcome.kind === 'accepted').length, 99);
  });

  it('gives some valid events a null locale', () => {
    const nullLocales = validLogins(events).filter((e) => e.locale === null).length;
    assert.ok(nullLocales >= 15 && nullLocales <= 45, `${nullLocales} null locales of 99`);
  });

  it('gives the same bodies for the same seed and different bodies for another', () => {
    const again = generateSampleEvents({ count: 100, seed: 1 });
    assert.deepEqual(again, events);
    const other = generateSampleEvents({ count: 100, seed: 2 });
    assert.notDeepEqual(
      other.map((e) => e.body),
      events.map((e) => e.body),
    );
    const shared = new Set(events.map((e) => e.body));
    assert.ok(other.filter((e) => e.valid && shared.has(e.body)).length === 0);
  });

  it('repeats some device_id values, each with the ip it first came with', () => {
    const logins = validLogins(events);
    const firstIp = new Map<string, string>();
    let repeats = 0;
    for (const login of logins) {
      const ip = firstIp.get(login.device_id);
      if (ip === undefined) firstIp.set(login.device_id, login.ip);
      else {
        repeats += 1;
        assert.equal(login.ip, ip);
      }
    }
    assert.ok(repeats > 0, 'no repeated device_id');
    assert.ok(repeats < 20, `${repeats} repeats with the default ratio of 0.05`);
  });

  it('follows repeatRatio: none at 0, many at 0.5', () => {
    const none = validLogins(generateSampleEvents({ count: 100, seed: 1, repeatRatio: 0 }));
    assert.equal(new Set(none.map((e) => e.device_id)).size, none.length);
    const half = validLogins(generateSampleEvents({ count: 100, seed: 1, repeatRatio: 0.5 }));
    const repeated = half.length - new Set(half.map((e) => e.device_id)).size;
    assert.ok(repeated >= 25, `${repeated} repeats at ratio 0.5`);
  });

  it('follows malformedRatio and handles zero events', () => {
    assert.equal(generateSampleEvents({ count: 100, seed: 1, malformedRatio: 0 }).filter((e) => !e.valid).length, 0);
    assert.equal(generateSampleEvents({ count: 1000, seed: 1, malformedRatio: 0.1 }).filter((e) => !e.valid).length, 100);
    assert.equal(generateSampleEvents({ count: 10, seed: 1 }).filter((e) => !e.valid).length, 1);
    assert.deepEqual(generateSampleEvents({ count: 0, seed: 1 }), []);
  });

  it('writes fields in the shape of the exercise', () => {
    for (const login of validLogins(events)) {
      assert.match(login.user_id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.match(login.device_id, /^\d{3}-\d{2}-\d{4}$/);
      assert.match(login.ip, /^\d{1,3}(\.\d{1,3}){3}$/);
      assert.ok(login.device_type === 'android' || login.device_type === 'ios');
    }
  });
});
