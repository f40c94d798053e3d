/**
 * printable() and printableJson(): stored text printed to a terminal has no character that can
 * drive it (escape sequences, C1 controls) or make it read differently (bidi controls), and
 * JSON stays JSON that parses to the same value.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { printable, printableJson } from '../../src/observability/printable.js';
import { formatTable } from '../../src/observability/table.js';

/** Fixed, so that a failure can be replayed; fast-check prints it with the counterexample. */
const SEED = 20_250_610;
const DANGEROUS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/;
const CONTROLS = [
  ...Array.from({ length: 0x20 }, (_, i) => String.fromCharCode(i)),
  ...Array.from({ length: 0x21 }, (_, i) => String.fromCharCode(0x7f + i)),
  '\u061c', '\u200e', '\u200f', '\u202a', '\u202b', '\u202c', '\u202d', '\u202e',
  '\u2066', '\u2067', '\u2068', '\u2069', '\u2028', '\u2029',
];
/** Text mixing every control with ordinary, non-ASCII and astral characters. */
const text = fc
  .array(fc.oneof(fc.constantFrom(...CONTROLS), fc.constantFrom('a', ' ', '\\', '"', 'é', '日', '😀', '\ud800'), fc.string()), { maxLength: 30 })
  .map((parts) => parts.join(''));

describe('printable', () => {
  it('writes each kind of control as a visible escape', () => {
    const cases: [string, string][] = [
      ['ios\x1b]52;c;SGVsbG8=\x07', 'ios\\x1b]52;c;SGVsbG8=\\x07'],
      ['\x1b[2Kerased', '\\x1b[2Kerased'],
      ['a\nb\tc\rd\0', 'a\\x0ab\\x09c\\x0dd\\x00'],
      ['del\x7f', 'del\\x7f'],
      ['csi\u009b2J nel\u0085', 'csi\\x9b2J nel\\x85'],
      ['user\u202eexe.txt', 'user\\u202eexe.txt'],
      ['\u200e\u200f\u2066\u2069\u061c', '\\u200e\\u200f\\u2066\\u2069\\u061c'],
      ['line\u2028para\u2029', 'line\\u2028para\\u2029'],
    ];
    for (const [input, expected] of cases) assert.equal(printable(input), expected);
  });

  it('leaves ordinary text as it is: letters of any script, emoji, backslashes, quotes', () => {
    for (const input of ['android', 'Ünïcödé 日本語 😀', 'C:\\path "quoted"', '']) assert.equal(printable(input), input);
  });

  it('never lets a control through, and escaping twice changes nothing', () => {
    fc.assert(
      fc.property(text, (input) => {
        const once = printable(input);
        assert.ok(!DANGEROUS.test(once), JSON.stringify(once));
        assert.equal(printable(once), once);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });
});

describe('printableJson', () => {
  it('escapes what JSON.stringify leaves raw, and parses back to the same value', () => {
    const value = { deviceType: 'ios\x1b[2K\u009b\u202e\u2028', n: 1, list: ['\u2066x\u2069', null] };
    const json = printableJson(value);
    assert.ok(!DANGEROUS.test(json), json);
    assert.match(json, /\\u009b\\u202e\\u2028/);
    assert.deepEqual(JSON.parse(json), value);
    const indented = printableJson(value, 2);
    assert.match(indented, /^\{\n {2}"deviceType": "ios\\u001b\[2K\\u009b\\u202e\\u2028",\n/);
    assert.deepEqual(JSON.parse(indented), value);
  });

  it('round-trips any JSON value with controls in its strings and keys', () => {
    const withText = fc.letrec((tie) => ({
      value: fc.oneof(
        { depthSize: 'small' },
        text,
        fc.integer(),
        fc.boolean(),
        fc.constant(null),
        fc.array(tie('value')),
        fc.dictionary(text, tie('value'), { noNullPrototype: true }),
      ),
    })).value;
    fc.assert(
      fc.property(withText, (value) => {
        const json = printableJson(value);
        assert.ok(!DANGEROUS.test(json), json);
        assert.deepEqual(JSON.parse(json), value);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });
});

describe('formatTable (report and demo)', () => {
  it('escapes every cell, header included, and pads to the escaped width', () => {
    const table = formatTable([
      ['device_type', 'logins'],
      ['ios\x1b]52;c;SGVsbG8=\x07', '3'],
      ['\x1b[2K', '12'],
    ]);
    const lines = table.split('\n');
    assert.ok(lines.every((line) => !DANGEROUS.test(line)), table);
    assert.deepEqual(lines, [
      '  device_type                logins',
      '  -------------------------  ------',
      '  ios\\x1b]52;c;SGVsbG8=\\x07       3',
      '  \\x1b[2K                        12',
    ]);
  });
});
