/**
 * The pure step between queue and table: parse, validate and mask one message.
 * It never throws on bad input; every message ends as exactly one outcome.
 */
import { canonicalIp } from './ip.js';
import { PII_FIELDS, type Masker, type PiiField, type VaultEntry } from './mask.js';
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

/** `vault`: in vault mode, the sealed originals of the values masked for this message. */
export type Outcome =
  | { readonly kind: 'accepted'; readonly message: QueueMessage; readonly row: LoginRow; readonly vault?: readonly VaultEntry[] }
  | {
      readonly kind: 'rejected';
      readonly message: QueueMessage;
      readonly reason: string;
      readonly maskedBody: string;
      readonly vault?: readonly VaultEntry[];
    };

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
    return reject(message, 'body is not valid JSON', masker);
  }
  const result = LoginEventSchema.safeParse(parsed);
  if (!result.success) return reject(message, describeIssues(result.error), masker);
  const event = result.data;
  const limit = masker.maxValueBytes;
  if (limit !== undefined) {
    // A masked value longer than its column would fail the whole batch in Postgres.
    const tooLong = PII_FIELDS.filter((field) => event[field] != null && Buffer.byteLength(event[field] as string, 'utf8') > limit);
    if (tooLong.length > 0) {
      return reject(message, tooLong.map((f) => `${f} is longer than ${limit} bytes, the most ${masker.mode} masking can store`).join('; '), masker);
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

/** A rejection of `message` for `reason`, its body kept with PII masked. */
export function reject(message: QueueMessage, reason: string, masker: Masker): Extract<Outcome, { kind: 'rejected' }> {
  const vault: VaultEntry[] = [];
  const maskedBody = maskBody(message.body, masker, vault);
  return vault.length === 0 ? { kind: 'rejected', message, reason, maskedBody } : { kind: 'rejected', message, reason, maskedBody, vault };
}

/**
 * The body of a rejected message with its PII masked, safe to keep for people to inspect.
 * In JSON bodies every `ip` and `device_id` property (any depth, any letter case) is masked, and
 * every other string and key is scrubbed as text. Bodies that are not JSON (or too deeply
 * nested to walk) are scrubbed as text: values that follow an "ip" or "device_id" key, anything
 * shaped like an IP address, and anything shaped like the exercise's device ids are masked.
 * Masked values equal those in user_logins, so a rejected message can be matched to its rows.
 */
export function maskBody(body: string, masker: Masker, vault?: VaultEntry[]): string {
  // Bind the vault list once, so every helper below masks (and, in vault mode, seals) alike.
  const m: Masker = { mode: masker.mode, keyId: masker.keyId, maxValueBytes: masker.maxValueBytes, mask: (f, v) => masker.mask(f, v, vault) };
  try {
    return JSON.stringify(maskJson(JSON.parse(body), m)) ?? 'null';
  } catch {
    return maskText(body, m);
  }
}

function piiField(key: string): PiiField | undefined {
  const lower = key.toLowerCase();
  return (PII_FIELDS as readonly string[]).includes(lower) ? (lower as PiiField) : undefined;
}

function maskValue(field: PiiField, value: unknown, masker: Masker): unknown {
  if (value === null) return null;
  if (typeof value === 'string') return masker.mask(field, field === 'ip' ? (canonicalIp(value) ?? value) : value);
  return masker.mask(field, JSON.stringify(value) ?? String(value));
}

/** Masks iteratively (no recursion), so deeply nested garbage cannot exhaust the stack here. */
function maskJson(root: unknown, masker: Masker): unknown {
  if (typeof root === 'string') return maskText(root, masker);
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const node = stack.pop();
    if (typeof node !== 'object' || node === null) continue;
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i += 1) {
        if (typeof node[i] === 'string') node[i] = maskText(node[i] as string, masker);
        else stack.push(node[i]);
      }
      continue;
    }
    const record = node as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      const value = record[key];
      const scrubbedKey = maskText(key, masker);
      if (scrubbedKey !== key) delete record[key];
      const field = piiField(key);
      if (field !== undefined) record[scrubbedKey] = maskValue(field, value, masker);
      else if (typeof value === 'string') record[scrubbedKey] = maskText(value, masker);
      else {
        record[scrubbedKey] = value;
        stack.push(value);
      }
    }
  }
  return root;
}

/**
 * A value after an `ip` or `device_id` key however the text spells it: `"ip": ...`, `'ip': ...`,
 * `ip=...`, `device_id: ...`. The value is a double- or single-quoted string (maybe cut short), a
 * bracketed list (masked whole), or a bare word.
 */
const KEYED_VALUE = /(["']?)(?<![\w-])(ip|device_id)\1(\s*[:=]\s*)("(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|\[[^\]]*\]?|[^,;&}\]\s"']+)/gi;
/** Runs of characters an IPv4 or IPv6 address is made of (matched in linear time). */
const ADDRESS_LIKE = /[0-9A-Fa-f:.]+/g;
/** Dotted quads inside a run too long to be one address. */
const IPV4_IN_RUN = /(?<![0-9])\d{1,3}(?:\.\d{1,3}){3}(?![0-9])/g;
/** The shape of the exercise's device ids (ddd-dd-dddd). */
const DEVICE_ID_LIKE = /(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)/g;

/** The address inside a run such as `2001:db8::1:` or `:10.0.0.1.`, if there is one. */
function addressIn(run: string): { text: string; canonical: string } | undefined {
  const trimmed = run.replace(/^[.]+|[.]+$/g, '');
  const noLead = trimmed.replace(/^:(?!:)/, '');
  for (const candidate of [trimmed, noLead, trimmed.replace(/(?<!:):$/, ''), noLead.replace(/(?<!:):$/, '')]) {
    const canonical = canonicalIp(candidate);
    if (canonical !== undefined) return { text: candidate, canonical };
  }
  return undefined;
}

function maskText(text: string, masker: Masker): string {
  const keyed = text.replace(KEYED_VALUE, (_all, keyQuote: string, name: string, separator: string, raw: string) => {
    const field = piiField(name) ?? 'ip';
    const quote = raw.startsWith('"') || raw.startsWith("'") ? raw.charAt(0) : '';
    const unquoted = quote === '' ? raw : raw.slice(1, raw.endsWith(quote) && raw.length > 1 ? -1 : undefined);
    return `${keyQuote}${name}${keyQuote}${separator}${quote}${maskValue(field, unquoted, masker) as string}${quote}`;
  });
  const addresses = keyed.replace(ADDRESS_LIKE, (run) => {
    if (!/[:.]/.test(run)) return run;
    if (run.length > 64) return run.replace(IPV4_IN_RUN, (ip) => masker.mask('ip', canonicalIp(ip) ?? ip));
    const address = addressIn(run);
    return address === undefined ? run : run.replace(address.text, () => masker.mask('ip', address.canonical));
  });
  return addresses.replace(DEVICE_ID_LIKE, (id) => masker.mask('device_id', id));
}
