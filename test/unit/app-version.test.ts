import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeAppVersion, encodeAppVersion } from '../../src/transform/app-version.js';

const INT4_MAX = 2_147_483_647;

function encoded(text: string): number {
  const result = encodeAppVersion(text);
  assert.ok(result.kind === 'ok', `expected ${JSON.stringify(text)} to encode, got: ${result.kind === 'invalid' ? result.reason : ''}`);
  return result.value;
}

describe('encodeAppVersion', () => {
  it('encodes one, two and three part versions as major*1e6 + minor*1e3 + patch', () => {
    assert.equal(encoded('2.3.0'), 2_003_000);
    assert.equal(encoded('0.96'), 96_000);
    assert.equal(encoded('3.7'), 3_007_000);
    assert.equal(encoded('2'), 2_000_000);
    assert.equal(encoded('0'), 0);
    assert.equal(encoded('1.999.999'), 1_999_999);
    assert.equal(encoded('10.0.1'), 10_000_001);
  });

  it('gives the same value to "2", "2.0" and "2.0.0"', () => {
    assert.equal(encoded('2.0'), encoded('2'));
    assert.equal(encoded('2.0.0'), encoded('2'));
  });

  it('accepts the largest version that fits an int4 column and refuses the next one', () => {
    assert.equal(encoded('2147.483.647'), INT4_MAX);
    assert.deepEqual(encodeAppVersion('2147.483.648'), { kind: 'invalid', reason: 'app_version is too large for an integer column' });
    assert.equal(encodeAppVersion('9999').kind, 'invalid');
  });

  it('reads parts as numbers, as the exercise writes them: "6.02" is 6.2.0, "2.00" is 2.0.0, "2.20" is 2.20.0', () => {
    assert.equal(encoded('6.02'), 6_002_000);
    assert.equal(encoded('6.02'), encoded('6.2'));
    assert.equal(encoded('2.00'), encoded('2.0'));
    assert.equal(encoded('2.20'), 2_020_000);
    assert.notEqual(encoded('2.20'), encoded('2.2'));
    assert.equal(encoded('01.2.03'), 1_002_003);
  });

  const refused = [
    '1.2.3.4', // four parts
    '2.3.0-beta', // pre-release suffix
    '2.3.0+build',
    'v2.3.0',
    '1.1000', // minor >= 1000
    '1.0.1000', // patch >= 1000
    '',
    ' 1.2.3',
    '1.2.3 ',
    '1. 2',
    '1..2',
    '1.2.',
    '.1',
    '-1',
    '1e3',
    '１.２', // full-width digits
  ];
  for (const text of refused) {
    it(`refuses ${JSON.stringify(text)} with a reason naming app_version`, () => {
      const result = encodeAppVersion(text);
      assert.equal(result.kind, 'invalid');
      assert.ok(result.kind === 'invalid');
      assert.match(result.reason, /^app_version /);
    });
  }

  it('preserves version order: a < b in semver order implies encode(a) < encode(b)', () => {
    const part = fc.integer({ min: 0, max: 999 });
    const version = fc.tuple(fc.integer({ min: 0, max: 2146 }), part, part);
    const compare = (a: readonly number[], b: readonly number[]): number => {
      for (let i = 0; i < 3; i += 1) {
        const d = (a[i] ?? 0) - (b[i] ?? 0);
        if (d !== 0) return d;
      }
      return 0;
    };
    fc.assert(
      fc.property(version, version, (x, y) => {
        fc.pre(compare(x, y) !== 0);
        const [lo, hi] = compare(x, y) < 0 ? [x, y] : [y, x];
        const a = encoded(lo.join('.'));
        const b = encoded(hi.join('.'));
        assert.ok(a < b, `${lo.join('.')} -> ${a} should be below ${hi.join('.')} -> ${b}`);
        assert.ok(b <= INT4_MAX);
      }),
      { numRuns: 2000 },
    );
  });

  it('orders short forms among three-part versions (0.96 < 0.96.1 < 0.97 < 1)', () => {
    const ordered = ['0.0.1', '0.96', '0.96.1', '0.97', '1', '1.0.1', '1.10', '2'].map(encoded);
    assert.deepEqual([...ordered].sort((a, b) => a - b), ordered);
    assert.equal(new Set(ordered).size, ordered.length);
  });
});

describe('decodeAppVersion', () => {
  it('turns encoded values back into major.minor.patch', () => {
    assert.equal(decodeAppVersion(2_003_000), '2.3.0');
    assert.equal(decodeAppVersion(96_000), '0.96.0');
    assert.equal(decodeAppVersion(0), '0.0.0');
    assert.equal(decodeAppVersion(INT4_MAX), '2147.483.647');
  });

  it('round-trips every canonical three-part version', () => {
    const part = fc.integer({ min: 0, max: 999 });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2146 }), part, part, (major, minor, patch) => {
        const text = `${major}.${minor}.${patch}`;
        assert.equal(decodeAppVersion(encoded(text)), text);
      }),
      { numRuns: 2000 },
    );
  });
});
