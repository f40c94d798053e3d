/**
 * Creates what the pipeline needs: the `login_etl` schema with its numbered migrations, and
 * `user_logins` if it is missing. Safe to run from many processes at once: everything happens
 * in one transaction under an advisory lock. When there is nothing to do it only reads, so the
 * pipeline's own database user needs no privilege to create anything (deploy/postgres-roles.sql).
 */
import { readFile, readdir } from 'node:fs/promises';
import type pg from 'pg';
import { withTransaction } from './transaction.js';
import { SinkError } from '../errors.js';

const MIGRATIONS_DIR = new URL('../../../migrations/', import.meta.url);
/** Arbitrary but fixed: the advisory lock every login-etl migration takes. */
const MIGRATION_LOCK_ID = 7_221_904_311;

export const USER_LOGINS_COLUMNS = [
  'user_id',
  'device_type',
  'masked_ip',
  'masked_device_id',
  'locale',
  'app_version',
  'create_date',
] as const;

export interface MigrationReport {
  readonly applied: string[];
}

/** SQLSTATE 42501: the user lacks a privilege, or is not the owner of what it would change. */
const INSUFFICIENT_PRIVILEGE = '42501';

export async function migrate(pool: pg.Pool): Promise<MigrationReport> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d+_.*\.sql$/.test(f)).sort();
  const versionOf = (file: string) => Number.parseInt(file, 10);
  // Every start of `run` and of the Lambda handler comes here: when everything is in place,
  // read and return, without a lock and without statements that need CREATE privileges.
  const before = await appliedVersions(pool);
  if (before !== undefined && files.every((f) => before.has(versionOf(f)))) {
    const missing = await missingUserLoginsColumns(pool);
    if (missing !== undefined) {
      assertUserLoginsShape(missing);
      return { applied: [] };
    }
  }
  const applied: string[] = [];
  const pending = files.filter((f) => !before?.has(versionOf(f)));
  try {
    await withTransaction(pool, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_ID]);
      // Not IF NOT EXISTS alone: Postgres checks the privilege to create before it looks, and the
      // owner of an existing schema need not be allowed to create schemas in the database.
      const [exists] = (
        await client.query<{ schema: boolean; table: boolean }>(
          `SELECT to_regnamespace('login_etl') IS NOT NULL AS schema, to_regclass('user_logins') IS NOT NULL AS table`,
        )
      ).rows;
      if (exists?.schema !== true) await client.query('CREATE SCHEMA IF NOT EXISTS login_etl');
      await client.query(`CREATE TABLE IF NOT EXISTS login_etl.schema_migrations (
          version    integer     PRIMARY KEY,
          name       text        NOT NULL,
          applied_at timestamptz NOT NULL DEFAULT now())`);
      const done = new Set(
        (await client.query<{ version: number }>('SELECT version FROM login_etl.schema_migrations')).rows.map((r) => r.version),
      );
      for (const file of files) {
        const version = versionOf(file);
        if (done.has(version)) continue;
        await client.query(await readFile(new URL(file, MIGRATIONS_DIR), 'utf8'));
        await client.query('INSERT INTO login_etl.schema_migrations (version, name) VALUES ($1, $2)', [version, file]);
        applied.push(file);
      }
      if (exists?.table !== true) await client.query(await readFile(new URL('user_logins.sql', MIGRATIONS_DIR), 'utf8'));
    });
  } catch (err) {
    if ((err as { code?: unknown }).code === INSUFFICIENT_PRIVILEGE) {
      const what = pending.length > 0 ? `migration ${pending.join(', ')} is pending and this database user may not apply it` : 'user_logins is missing and this database user may not create it';
      throw new SinkError(`${what} (${(err as Error).message}): run \`login-etl migrate\` as the owner (login_etl_owner)`, { cause: err });
    }
    throw err;
  }
  assertUserLoginsShape(await missingUserLoginsColumns(pool));
  return { applied };
}

/** The versions in login_etl.schema_migrations, or undefined before the first migration. */
async function appliedVersions(pool: pg.Pool): Promise<Set<number> | undefined> {
  const [ledger] = (await pool.query<{ exists: boolean }>(`SELECT to_regclass('login_etl.schema_migrations') IS NOT NULL AS exists`)).rows;
  if (ledger?.exists !== true) return undefined;
  const { rows } = await pool.query<{ version: number }>('SELECT version FROM login_etl.schema_migrations');
  return new Set(rows.map((r) => r.version));
}

/** Fails early, with the names, when an existing user_logins lacks columns the pipeline writes. */
function assertUserLoginsShape(missing: readonly string[] | undefined): void {
  if (missing !== undefined && missing.length > 0) {
    throw new Error(`user_logins exists but lacks the column(s) ${missing.join(', ')}`);
  }
}

/**
 * The columns the pipeline writes that the `user_logins` on the search path lacks, or undefined
 * when there is no such table. Reads the catalog only, so `check` can use it without creating
 * anything.
 */
export async function missingUserLoginsColumns(db: pg.Pool | pg.ClientBase): Promise<string[] | undefined> {
  const { rows } = await db.query<{ column_name: string | null }>(
    `SELECT a.attname AS column_name
       FROM (SELECT to_regclass('user_logins') AS oid) t
       LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
      WHERE t.oid IS NOT NULL`,
  );
  if (rows.length === 0) return undefined;
  const present = new Set(rows.map((r) => r.column_name));
  return USER_LOGINS_COLUMNS.filter((c) => !present.has(c));
}
