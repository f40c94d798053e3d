/**
 * Text from the database made safe to print. Stored text comes from producers nobody controls:
 * an escape sequence in a device_type can erase lines, retitle the terminal or write to the
 * clipboard (OSC 52), and bidi controls can make text read differently from what it is. Every
 * value read from the database goes through one of these before it reaches a terminal.
 */

// C0 controls (newline and tab included), DEL, C1 controls, the bidi controls (marks, embeddings,
// overrides, isolates, and the Arabic letter mark) and the line and paragraph separators.
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g;
// What JSON.stringify leaves raw of those: it escapes C0 controls itself.
const RAW_IN_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g;

const hex = (c: string, digits: number) => (c.codePointAt(0) ?? 0).toString(16).padStart(digits, '0');

/** The text with every control character written as a visible escape: `\x1b`, `\u202e`. */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => (c <= '\u00ff' ? `\\x${hex(c, 2)}` : `\\u${hex(c, 4)}`));
}

/**
 * JSON.stringify, with the characters it leaves raw written as \u escapes: still valid JSON,
 * which parses to the same value. `space` is JSON.stringify's indentation.
 */
export function printableJson(value: unknown, space?: number): string {
  // Outside strings JSON has only ASCII, so every match is inside a string, where \u is valid.
  return (JSON.stringify(value, null, space) ?? 'null').replace(RAW_IN_JSON, (c) => `\\u${hex(c, 4)}`);
}
