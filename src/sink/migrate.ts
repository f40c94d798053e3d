/**
 * Creates what the pipeline needs: the `login_etl` schema with its numbered migrations, and
 * `user_logins` if it is missing. Safe to run from many processes at once: everything happens
 * in one transaction under an advisory lock.
 */
import { readFile, readdir } from 'node:fs/promises';
import type pg from 'pg';

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

export async function migrate(pool: pg.Pool): Promise<MigrationReport> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d+_.*\.sql$/.test(f)).sort();
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_ID]);
    await client.query('CREATE SCHEMA IF NOT EXISTS login_etl');
    await client.query(`CREATE TABLE IF NOT EXISTS login_etl.schema_migrations (
        version    integer     PRIMARY KEY,
        name       text        NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set(
      (await client.query<{ version: number }>('SELECT version FROM login_etl.schema_migrations')).rows.map((r) => r.version),
    );
    for (const file of files) {
      const version = Number.parseInt(file, 10);
      if (done.has(version)) continue;
      await client.query(await readFile(new URL(file, MIGRATIONS_DIR), 'utf8'));
      await client.query('INSERT INTO login_etl.schema_migrations (version, name) VALUES ($1, $2)', [version, file]);
      applied.push(file);
    }
    await client.query(await readFile(new URL('user_logins.sql', MIGRATIONS_DIR), 'utf8'));
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
  await assertUserLoginsShape(pool);
  return { applied };
}

/** Fails early, with the names, when an existing user_logins lacks columns the pipeline writes. */
async function assertUserLoginsShape(pool: pg.Pool): Promise<void> {
  const missing = await missingUserLoginsColumns(pool);
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
