/**
 * The pure step between queue and table: parse, validate and mask one message.
 * It never throws on bad input; every message ends as exactly one outcome.
 */
import type { QueueMessage } from '../source/queue.js';
import { PII_FIELDS, type Masker, type VaultEntry } from './mask.js';
import { LoginEventSchema, describeIssues } from './schema.js';
import type { SealedBody } from './seal.js';
import { bodyShape, shapeOf, type BodyShape } from './shape.js';

/** One row of `user_logins`, PII already masked. */
export interface LoginRow {
  readonly user_id: string;
  readonly device_type: string | null;
  readonly masked_ip: string | null;
  readonly masked_device_id: string | null;
  readonly locale: string | null;
  readonly app_version: number | null;
  /** UTC date of SentTimestamp, YYYY-MM-DD. */
  readonly create_date: string | null;
}

/** `vault`: in vault mode, the sealed originals of the values masked for this message. */
export type Outcome =
  | { readonly kind: 'accepted'; readonly message: QueueMessage; readonly row: LoginRow; readonly vault?: readonly VaultEntry[] }
  | Rejection;

/** A message that is not a valid login event, kept for people to inspect. */
export interface Rejection {
  readonly kind: 'rejected';
  readonly message: QueueMessage;
  /** Names fields and rules, never values. */
  readonly reason: string;
  /** UTF-8 bytes of the body. */
  readonly bytes: number;
  /** Keyed token of the body: equal bodies, equal tokens. */
  readonly token: string;
  readonly shape: BodyShape;
  /** The original body, for key holders only. */
  readonly sealed: SealedBody;
}

const DAY_MS = 86_400_000;
/** The last day formatted: a batch's messages were almost always sent on the same day. */
let lastDay: { readonly day: number; readonly date: string } | undefined;

export function utcDate(epochMs: number | undefined): string | null {
  if (epochMs === undefined || !Number.isFinite(epochMs)) return null;
  const day = Math.floor(epochMs / DAY_MS);
  if (lastDay?.day === day) return lastDay.date;
  const date = new Date(epochMs);
  if (Number.isNaN(date.getTime())) return null;
  lastDay = { day, date: date.toISOString().slice(0, 10) };
  return lastDay.date;
}

export function transform(message: QueueMessage, masker: Masker): Outcome {
  let parsed: unknown;
  try {
    parsed = JSON.parse(message.body);
  } catch {
    return reject(message, 'body is not valid JSON', masker, { json: 'invalid' });
  }
  const result = LoginEventSchema.safeParse(parsed);
  if (!result.success) return reject(message, describeIssues(result.error), masker, shapeOf(parsed));
  const event = result.data;
  const limit = masker.maxValueBytes;
  if (limit !== undefined) {
    // A masked value longer than its column would fail the whole batch in Postgres.
    const tooLong = PII_FIELDS.filter((field) => event[field] != null && Buffer.byteLength(event[field] as string, 'utf8') > limit);
    if (tooLong.length > 0) {
      const reason = tooLong.map((f) => `${f} is longer than ${limit} bytes, the most ${masker.mode} masking can store`).join('; ');
      return reject(message, reason, masker, shapeOf(parsed));
    }
  }
  const vault: VaultEntry[] = [];
  const row: LoginRow = {
    user_id: event.user_id,
    device_type: event.device_type ?? null,
    masked_ip: event.ip === null ? null : masker.mask('ip', event.ip, vault),
    masked_device_id: event.device_id == null ? null : masker.mask('device_id', event.device_id, vault),
    locale: event.locale ?? null,
    app_version: event.app_version,
    create_date: utcDate(message.sentTimestampMs),
  };
  return vault.length === 0 ? { kind: 'accepted', message, row } : { kind: 'accepted', message, row, vault };
}

/**
 * A rejection of `message` for `reason`. The body is sealed for key holders, never scanned for
 * PII; what stays in clear (its length, a keyed token, its shape) holds none by construction.
 * `shape` saves parsing the body again when the caller already knows it.
 */
export function reject(message: QueueMessage, reason: string, masker: Masker, shape?: BodyShape): Rejection {
  const { body } = message;
  return {
    kind: 'rejected',
    message,
    reason,
    bytes: Buffer.byteLength(body, 'utf8'),
    token: masker.bodies.token(body),
    shape: shape ?? bodyShape(body),
    sealed: masker.bodies.seal(message.messageId, body),
  };
}
