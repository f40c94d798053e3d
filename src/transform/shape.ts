/**
 * What a rejected message shows in clear: its shape, free of personal data by construction.
 * Nothing here searches text for PII; it keeps only what cannot hold any.
 *
 * For a JSON object: each field the pipeline knows, present or missing, its JSON type, and its
 * length when it is a string or an array; the value itself only for `user_id`, `device_type`,
 * `locale` and `app_version`, and only when it is a string that `user_logins` would store as it
 * is (these columns hold those values in clear for every accepted event; app_version as the
 * number it becomes, read back as text). Other keys are counted,
 * never named: a key can itself be personal data (`{"203.0.113.9": 1}`).
 */
import { decodeAppVersion, encodeAppVersion } from './app-version.js';
import { LoginEventSchema } from './schema.js';

export const KNOWN_FIELDS = ['user_id', 'app_version', 'device_type', 'ip', 'locale', 'device_id'] as const;
export type KnownField = (typeof KNOWN_FIELDS)[number];

/** The fields whose string values user_logins stores in clear, so their shape may show them too. */
const CLEAR_FIELDS: ReadonlySet<KnownField> = new Set(['user_id', 'device_type', 'locale', 'app_version']);

export type JsonType = 'null' | 'boolean' | 'number' | 'string' | 'array' | 'object';

export interface FieldShape {
  readonly type: JsonType | 'missing';
  /** Characters of a string (code points, as varchar counts them), elements of an array. */
  readonly length?: number;
  /** Only for user_id, device_type, locale and app_version strings that their column accepts. */
  readonly value?: string;
}

export type BodyShape =
  | { readonly json: 'invalid' }
  | { readonly json: Exclude<JsonType, 'object'> }
  | { readonly json: 'object'; readonly fields: Readonly<Record<KnownField, FieldShape>>; readonly otherKeys: number };

function jsonType(value: unknown): JsonType {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value as 'boolean' | 'number' | 'string' | 'object';
}

function codePoints(text: string): number {
  let count = 0;
  for (let i = 0; i < text.length; i += 1) {
    const unit = text.charCodeAt(i);
    // A high surrogate followed by a low one is one code point.
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i += 1;
    }
    count += 1;
  }
  return count;
}

/**
 * The value as user_logins would store it in clear, or undefined. app_version is stored as a
 * number, so its text is shown as that number reads back ("02.3" becomes "2.3.0"), never as sent.
 */
function storedInClear(field: KnownField, value: string): string | undefined {
  if (!CLEAR_FIELDS.has(field)) return undefined;
  if (field === 'app_version') {
    const encoded = encodeAppVersion(value);
    return encoded.kind === 'ok' ? decodeAppVersion(encoded.value) : undefined;
  }
  return LoginEventSchema.shape[field as 'user_id' | 'device_type' | 'locale'].safeParse(value).success ? value : undefined;
}

function fieldShape(record: Record<string, unknown>, field: KnownField): FieldShape {
  if (!Object.hasOwn(record, field)) return { type: 'missing' };
  const value = record[field];
  const type = jsonType(value);
  if (typeof value === 'string') {
    const stored = storedInClear(field, value);
    return stored === undefined ? { type, length: codePoints(value) } : { type, length: codePoints(value), value: stored };
  }
  if (Array.isArray(value)) return { type, length: value.length };
  return { type };
}

/** The shape of a body. Never throws; a body that is not JSON is `{ json: 'invalid' }`. */
export function bodyShape(body: string): BodyShape {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return { json: 'invalid' };
  }
  return shapeOf(parsed);
}

/** The shape of an already parsed body. */
export function shapeOf(parsed: unknown): BodyShape {
  const type = jsonType(parsed);
  if (type !== 'object') return { json: type };
  const record = parsed as Record<string, unknown>;
  const fields = Object.fromEntries(KNOWN_FIELDS.map((field) => [field, fieldShape(record, field)])) as Record<KnownField, FieldShape>;
  const known = KNOWN_FIELDS.filter((field) => Object.hasOwn(record, field)).length;
  return { json: 'object', fields, otherKeys: Object.keys(record).length - known };
}

/**
 * A shape in a few words, for people: `object: user_id string(7), ip missing, ...; 2 other keys`.
 * Only known fields that are present are listed; values are left out (they are in the shape).
 */
export function describeShape(shape: BodyShape): string {
  if (shape.json === 'invalid') return 'not JSON';
  if (shape.json !== 'object') return `JSON ${shape.json}`;
  const present = KNOWN_FIELDS.filter((field) => shape.fields[field].type !== 'missing').map((field) => {
    const { type, length } = shape.fields[field];
    return `${field} ${type}${length === undefined ? '' : `(${length})`}`;
  });
  const known = present.length === 0 ? `none of the ${KNOWN_FIELDS.length} login fields` : present.join(', ');
  return `object: ${known}; ${shape.otherKeys} other ${shape.otherKeys === 1 ? 'key' : 'keys'}`;
}
