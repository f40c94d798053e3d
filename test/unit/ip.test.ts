import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { canonicalIp } from '../../src/transform/ip.js';

describe('canonicalIp', () => {
  const canonical: [input: string, expected: string][] = [
    ['1.2.3.4', '1.2.3.4'],
    ['203.0.113.7', '203.0.113.7'],
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', '255.255.255.255'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['2001:db8::1', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // RFC 5952: compress the first of equal runs
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // RFC 5952: a single zero group is not compressed
    ['FE80::ABCD', 'fe80::abcd'],
    ['::1', '::1'],
    ['::', '::'],
    ['::ffff:1.2.3.4', '1.2.3.4'],
    ['::FFFF:102:304', '1.2.3.4'],
    ['0:0:0:0:0:ffff:cb00:7107', '203.0.113.7'],
  ];
  for (const [input, expected] of canonical) {
    it(`canonicalises ${JSON.stringify(input)} to ${JSON.stringify(expected)}`, () => {
      assert.equal(canonicalIp(input), expected);
    });
  }

  const refused = [
    '01.2.3.4', // octal-looking
    '1.2.3.04',
    '0x7f.1', // hex, short form
    '0x7f.0.0.1',
    '127.1',
    '1.2.3', // three parts
    '1.2.3.4.5',
    '2130706433', // a single 32-bit number
    'fe80::1%eth0', // zone id
    'fe80::1%25eth0',
    '1.2.3.4 ',
    ' 1.2.3.4',
    '1.2.3.4\n',
    '2001:db8::1 ',
    '',
    '999.1.1.1',
    '256.0.0.1',
    '::ffff:999.1.1.1',
    '2001:db8::1::2',
    '1:2:3:4:5:6:7:8:9',
    'not-an-ip',
    'localhost',
  ];
  for (const input of refused) {
    it(`refuses ${JSON.stringify(input)}`, () => {
      assert.equal(canonicalIp(input), undefined);
    });
  }

  it('agrees with ipaddr.js on every dotted quad, and refuses parts with a leading zero or over 255', () => {
    const part = fc.integer({ min: 0, max: 255 });
    fc.assert(
      fc.property(fc.tuple(part, part, part, part), (parts) => {
        const text = parts.join('.');
        assert.equal(canonicalIp(text), ipaddr.IPv4.parse(text).toString());
      }),
      { numRuns: 2_000 },
    );
    fc.assert(
      fc.property(fc.tuple(part, part, part, part), fc.integer({ min: 0, max: 3 }), fc.boolean(), (parts, at, padded) => {
        const spelled = parts.map((p, i) => (i !== at ? String(p) : padded ? `0${p}` : String(p + 256)));
        assert.equal(canonicalIp(spelled.join('.')), undefined);
      }),
      { numRuns: 2_000 },
    );
  });
});
