/**
 * `login-etl report`: what analysts ask of user_logins first, read-only. Logins per day, per
 * device type and per app version, and the masked ip and device_id values seen most often
 * (repeat devices and addresses stay countable after masking). Only masked values are read.
 */
import type pg from 'pg';
import { withTransaction } from './sink/transaction.js';
import { formatTable } from './observability/table.js';
import { plural } from './plural.js';

export interface LoginReport {
  readonly logins: number;
  readonly rejected: number | null;
  /** Most recent days first, at most `days` of them. */
  readonly perDay: readonly { readonly day: string | null; readonly logins: number }[];
  readonly perDeviceType: readonly { readonly deviceType: string | null; readonly logins: number }[];
  readonly perAppVersion: readonly { readonly appVersion: string | null; readonly logins: number }[];
  /** Masked values seen more than once, most frequent first. */
  readonly repeatedIps: readonly { readonly maskedIp: string; readonly logins: number }[];
  readonly repeatedDeviceIds: readonly { readonly maskedDeviceId: string; readonly logins: number }[];
}

export interface ReportOptions {
  /** Days in the per-day section. */
  readonly days: number;
  /** Rows in every other section. */
  readonly top: number;
}

// One query per section; each is a plain GROUP BY that Postgres answers from the table alone.
const PER_DAY = `SELECT create_date::text AS day, count(*)::int AS logins
                   FROM user_logins GROUP BY create_date ORDER BY create_date DESC NULLS LAST LIMIT $1`;
const PER_DEVICE_TYPE = `SELECT device_type AS "deviceType", count(*)::int AS logins
                           FROM user_logins GROUP BY device_type ORDER BY logins DESC, device_type LIMIT $1`;
const perAppVersion = (versionText: string) => `SELECT ${versionText} AS "appVersion", count(*)::int AS logins
                           FROM user_logins GROUP BY app_version ORDER BY logins DESC, app_version DESC NULLS LAST LIMIT $1`;
/** login_etl.app_version_text of migrations/001_login_etl.sql, for a user_logins without the login_etl schema. */
const APP_VERSION_TEXT_INLINE = `(app_version / 1000000)::text || '.' || (app_version / 1000 % 1000)::text || '.' || (app_version % 1000)::text`;
const REPEATED_IPS = `SELECT masked_ip AS "maskedIp", count(*)::int AS logins FROM user_logins
                       WHERE masked_ip IS NOT NULL GROUP BY masked_ip HAVING count(*) > 1
                       ORDER BY logins DESC, masked_ip LIMIT $1`;
const REPEATED_DEVICE_IDS = `SELECT masked_device_id AS "maskedDeviceId", count(*)::int AS logins FROM user_logins
                              WHERE masked_device_id IS NOT NULL GROUP BY masked_device_id HAVING count(*) > 1
                              ORDER BY logins DESC, masked_device_id LIMIT $1`;

/**
 * Runs every query in one read-only transaction, so the sections agree with each other.
 * Undefined when the database has no user_logins yet.
 */
export async function buildReport(pool: pg.Pool, options: ReportOptions): Promise<LoginReport | undefined> {
  return await withTransaction(pool, async (client) => {
    const one = async <T extends pg.QueryResultRow>(text: string, values: unknown[] = []) => (await client.query<T>(text, values)).rows;
    const [found] = await one<{ hasTable: boolean; versionText: boolean }>(
      `SELECT to_regclass('user_logins') IS NOT NULL AS "hasTable",
              to_regprocedure('login_etl.app_version_text(integer)') IS NOT NULL AS "versionText"`,
    );
    if (found?.hasTable !== true) return undefined;
    const [total] = await one<{ logins: number; pipeline: boolean }>(
      `SELECT count(*)::int AS logins, to_regclass('login_etl.rejected_messages') IS NOT NULL AS pipeline FROM user_logins`,
    );
    // A user_logins filled by other means has no rejected_messages beside it.
    const rejected = total?.pipeline ? ((await one<{ n: number }>('SELECT count(*)::int AS n FROM login_etl.rejected_messages'))[0]?.n ?? 0) : null;
    return {
      logins: total?.logins ?? 0,
      rejected,
      perDay: await one(PER_DAY, [options.days]),
      perDeviceType: await one(PER_DEVICE_TYPE, [options.top]),
      perAppVersion: await one(perAppVersion(found.versionText ? 'login_etl.app_version_text(app_version)' : APP_VERSION_TEXT_INLINE), [options.top]),
      repeatedIps: await one(REPEATED_IPS, [options.top]),
      repeatedDeviceIds: await one(REPEATED_DEVICE_IDS, [options.top]),
    };
  }, { snapshotReadOnly: true });
}

/** The report of a database with no user_logins yet: nothing counted, nothing rejected. */
export function emptyReport(): LoginReport {
  return { logins: 0, rejected: null, perDay: [], perDeviceType: [], perAppVersion: [], repeatedIps: [], repeatedDeviceIds: [] };
}

/** The report as text tables, for people. */
export function formatReport(report: LoginReport): string {
  // Cells are stored text; formatTable escapes them.
  const none = (value: string | null) => value ?? '(none)';
  const sections: [string, string[], string[][]][] = [
    ['Logins per day (UTC date the event was sent, most recent first)', ['day', 'logins'], report.perDay.map((r) => [none(r.day), String(r.logins)])],
    ['Logins per device type', ['device_type', 'logins'], report.perDeviceType.map((r) => [none(r.deviceType), String(r.logins)])],
    ['Logins per app version', ['app_version', 'logins'], report.perAppVersion.map((r) => [none(r.appVersion), String(r.logins)])],
    ['Most repeated masked ip values', ['masked_ip', 'logins'], report.repeatedIps.map((r) => [r.maskedIp, String(r.logins)])],
    ['Most repeated masked device_id values', ['masked_device_id', 'logins'], report.repeatedDeviceIds.map((r) => [r.maskedDeviceId, String(r.logins)])],
  ];
  const lines = [`user_logins: ${plural(report.logins, 'login')}` + (report.rejected === null ? '' : `; login_etl.rejected_messages: ${plural(report.rejected, 'rejected message')}`)];
  for (const [title, header, rows] of sections) {
    lines.push('', `${title}:`, rows.length === 0 ? '  (none)' : formatTable([header, ...rows]));
  }
  return lines.join('\n');
}

