/**
 * The login event as it arrives on the queue. The schema is the type: what passes it can be
 * written to `user_logins` without truncation or guessing. Unknown extra fields are ignored.
 */
import { z } from 'zod';
import { encodeAppVersion } from './app-version.js';
import { canonicalIp } from './ip.js';

/**
 * Text that Postgres stores as given: well-formed Unicode (no lone surrogates, which would be
 * silently replaced), no NUL (which Postgres cannot store), and at most `max` characters as
 * varchar counts them (code points, not UTF-16 units).
 */
const text = (max: number) =>
  z.string().check((ctx) => {
    // One check for the three rules: a string field is checked once per message.
    const s = ctx.value;
    const problem = !s.isWellFormed()
      ? 'is not well-formed Unicode'
      : s.includes('\u0000')
        ? 'contains a NUL character'
        : s.length > max && [...s].length > max
          ? `is longer than ${max} characters`
          : undefined;
    if (problem !== undefined) ctx.issues.push({ code: 'custom', message: problem, input: s });
  });

export const LoginEventSchema = z.object({
  user_id: text(128).refine((s) => s.length > 0, { error: 'is empty' }),
  device_type: text(32).nullish(),
  ip: z
    .string()
    .nullish()
    .transform((ip, ctx) => {
      if (ip === null || ip === undefined) return null;
      const canonical = canonicalIp(ip);
      if (canonical === undefined) {
        ctx.addIssue({ code: 'custom', message: 'is not an IPv4 or IPv6 address' });
        return z.NEVER;
      }
      return canonical;
    }),
  locale: text(32).nullish(),
  device_id: text(256).nullish(),
  app_version: z
    .string()
    .nullish()
    .transform((version, ctx) => {
      if (version === null || version === undefined) return null;
      const encoded = encodeAppVersion(version);
      if (encoded.kind === 'invalid') {
        ctx.addIssue({ code: 'custom', message: encoded.reason.replace(/^app_version /, '') });
        return z.NEVER;
      }
      return encoded.value;
    }),
});

/** A validated event: ip canonical, app_version encoded as an integer, absent fields null. */
export type LoginEvent = z.output<typeof LoginEventSchema>;

/**
 * A short reason naming every failing field, for `rejected_messages.reason`. Zod's messages do
 * not quote input values, so no PII reaches the reason.
 */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const path = issue.path.join('.');
      const message = / received undefined$/.test(issue.message) ? 'is required' : issue.message.replace(/^Invalid input: /, '');
      return path ? `${path} ${message}` : `message ${message}`;
    })
    .join('; ');
}
