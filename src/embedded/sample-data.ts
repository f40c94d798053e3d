/**
 * Sample login events in the shape of the original exercise: mostly valid logins, about one in
 * a hundred malformed, about three in ten with a null locale, and some repeat logins that
 * reuse a device and an address (the duplicates masking must keep visible). Seeded, so a
 * given seed always gives the same events.
 */
export interface SampleOptions {
  readonly count: number;
  readonly seed?: number;
  /** Share of malformed messages; at least one whenever this is above zero. */
  readonly malformedRatio?: number;
  readonly nullLocaleRatio?: number;
  /** Share of logins that reuse an earlier login's ip and device_id. */
  readonly repeatRatio?: number;
}

export interface SampleEvent {
  readonly body: string;
  readonly valid: boolean;
}

export const MALFORMED_BODY = JSON.stringify({ foo: 'oops_wrong_msg_type', bar: '123' });

const LOCALES = ['RU', 'PH', 'ID', 'FR', 'US', 'BR', 'CN', 'DE', 'IN', 'JP', 'MX', 'NG', 'PL', 'SE', 'VN'];

/** mulberry32: a small, fast, seedable generator. Not for secrets, only for sample data. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

export function generateSampleEvents(options: SampleOptions): SampleEvent[] {
  const random = prng(options.seed ?? 1);
  const int = (below: number) => Math.floor(random() * below);
  const digits = (n: number) => Array.from({ length: n }, () => int(10)).join('');
  const uuid = () => formatUuid(Array.from({ length: 16 }, () => int(256)));
  const malformedRatio = options.malformedRatio ?? 0.01;
  const malformed = malformedRatio > 0 && options.count > 0 ? Math.max(1, Math.round(options.count * malformedRatio)) : 0;
  const malformedAt = new Set<number>();
  while (malformedAt.size < malformed) malformedAt.add(int(options.count));

  const seen: { ip: string; device_id: string }[] = [];
  const events: SampleEvent[] = [];
  for (let i = 0; i < options.count; i += 1) {
    if (malformedAt.has(i)) {
      events.push({ body: MALFORMED_BODY, valid: false });
      continue;
    }
    const repeat = seen.length > 0 && random() < (options.repeatRatio ?? 0.05) ? seen[int(seen.length)] : undefined;
    const ip = repeat?.ip ?? `${1 + int(223)}.${int(256)}.${int(256)}.${int(256)}`;
    const deviceId = repeat?.device_id ?? `${digits(3)}-${digits(2)}-${digits(4)}`;
    seen.push({ ip, device_id: deviceId });
    // Two-part versions come written both ways, "0.96" and "6.02", as in the exercise's data.
    const version = random() < 0.4 ? `${int(10)}.${String(int(100)).padStart(random() < 0.5 ? 2 : 1, '0')}` : `${int(10)}.${int(10)}.${int(10)}`;
    const event = {
      user_id: uuid(),
      app_version: version,
      device_type: random() < 0.5 ? 'android' : 'ios',
      ip,
      locale: random() < (options.nullLocaleRatio ?? 0.29) ? null : LOCALES[int(LOCALES.length)],
      device_id: deviceId,
    };
    events.push({ body: JSON.stringify(event), valid: true });
  }
  return events;
}

function formatUuid(bytes: number[]): string {
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x40;
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
  const hex = bytes.map((b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
