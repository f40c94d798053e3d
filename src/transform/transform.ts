/**
 * The pure step between queue and table: parse, validate and mask one message.
 * It never throws on bad input; every message ends as exactly one outcome.
 */
import { canonicalIp } from './ip.js';
import { PII_FIELDS, type Masker, type PiiField } from './mask.js';
import { LoginEventSchema, describeIssues } from './schema.js';

/** A message as received from the queue, with the system attributes the pipeline asks for. */
export interface QueueMessage {
  readonly messageId: string;
  readonly receiptHandle: string;
  readonly body: string;
  /** When SQS accepted the message (SentTimestamp), in epoch milliseconds. */
  readonly sentTimestampMs: number | undefined;
  readonly receiveCount: number;
}

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

export type Outcome =
  | { readonly kind: 'accepted'; readonly message: QueueMessage; readonly row: LoginRow }
  | { readonly kind: 'rejected'; readonly message: QueueMessage; readonly reason: string; readonly maskedBody: string };

export function utcDate(epochMs: number | undefined): string | null {
  if (epochMs === undefined || !Number.isFinite(epochMs)) return null;
  const date = new Date(epochMs);
  return Number.isNaN(date.getTime()) ? null : date.toISOString().slice(0, 10);
}

export function transform(message: QueueMessage, masker: Masker): Outcome {
  let parsed: unknown;
  try {
    parsed = JSON.parse(message.body);
  } catch {
    return reject(message, 'body is not valid JSON', masker);
  }
  const result = LoginEventSchema.safeParse(parsed);
  if (!result.success) return reject(message, describeIssues(result.error), masker);
  const event = result.data;
  return {
    kind: 'accepted',
    message,
    row: {
      user_id: event.user_id,
      device_type: event.device_type ?? null,
      masked_ip: event.ip === null ? null : masker.mask('ip', event.ip),
      masked_device_id: event.device_id == null ? null : masker.mask('device_id', event.device_id),
      locale: event.locale ?? null,
      app_version: event.app_version,
      create_date: utcDate(message.sentTimestampMs),
    },
  };
}

function reject(message: QueueMessage, reason: string, masker: Masker): Outcome {
  return { kind: 'rejected', message, reason, maskedBody: maskBody(message.body, masker) };
}

/**
 * The body of a rejected message with its PII masked, safe to keep for people to inspect.
 * JSON bodies have every `ip` and `device_id` property masked at any depth. Bodies that are not
 * JSON (or too deeply nested to walk) are scrubbed as text: values that follow an "ip" or
 * "device_id" key and anything shaped like an IP address are masked.
 */
export function maskBody(body: string, masker: Masker): string {
  try {
    const walked = maskJson(JSON.parse(body), masker);
    return JSON.stringify(walked) ?? 'null';
  } catch {
    return maskText(body, masker);
  }
}

function maskValue(field: PiiField, value: unknown, masker: Masker): unknown {
  if (value === null) return null;
  if (typeof value === 'string') return masker.mask(field, field === 'ip' ? (canonicalIp(value) ?? value) : value);
  return masker.mask(field, JSON.stringify(value) ?? String(value));
}

function isPiiField(key: string): key is PiiField {
  return (PII_FIELDS as readonly string[]).includes(key);
}

/** Masks in place, iteratively, so deeply nested garbage cannot exhaust the stack here. */
function maskJson(root: unknown, masker: Masker): unknown {
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const node = stack.pop();
    if (typeof node !== 'object' || node === null) continue;
    if (Array.isArray(node)) {
      stack.push(...node);
      continue;
    }
    const record = node as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      if (isPiiField(key)) record[key] = maskValue(key, record[key], masker);
      else stack.push(record[key]);
    }
  }
  return root;
}

const KEYED_VALUE = /"(ip|device_id)"(\s*:\s*)("(?:[^"\\]|\\.)*"?|[^,}\]\s]+)/g;
const IPV4 = /(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])/g;
const IPV6 = /(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![0-9A-Fa-f:])/g;

function maskText(body: string, masker: Masker): string {
  const keyed = body.replace(KEYED_VALUE, (_all, field: PiiField, colon: string, raw: string) => {
    const unquoted = raw.startsWith('"') ? raw.replace(/^"|"$/g, '') : raw;
    return `"${field}"${colon}"${maskValue(field, unquoted, masker) as string}"`;
  });
  const withoutV4 = keyed.replace(IPV4, (ip) => masker.mask('ip', canonicalIp(ip) ?? ip));
  return withoutV4.replace(IPV6, (candidate) => {
    const canonical = canonicalIp(candidate);
    return canonical === undefined ? candidate : masker.mask('ip', canonical);
  });
}
