/**
 * `login-etl check`: verifies a `run` configuration without consuming or creating anything.
 * The configuration itself is parsed by the caller exactly as `run` parses it (a bad setting
 * is exit 2 before any check); then the queue and the database are asked read-only questions.
 */
import pg from 'pg';
import type { RunConfig } from './config.js';
import { describeError } from './errors.js';
import { missingUserLoginsColumns, USER_LOGINS_COLUMNS } from './sink/migrate.js';
import type { StaticCredentials } from './source/aws.js';
import { createQueue } from './source/clients.js';

export type CheckResult = { readonly name: string; readonly ok: true; readonly detail: string } | { readonly name: string; readonly ok: false; readonly detail: string };

/** How long each check may take: long enough for a slow network, short enough for a probe. */
const CHECK_TIMEOUT_MS = 10_000;

/**
 * Reaches the queue with GetQueueAttributes through the very client `run` would use
 * (`--sqs-client`, its deadlines, its credentials): it proves the URL, endpoint, credentials,
 * permission and that client's signing.
 */
async function checkQueue(config: RunConfig, credentials?: StaticCredentials): Promise<CheckResult> {
  const clients = await createQueue(config.sqs, {
    connections: 1,
    client: config.sqsClient,
    timeoutMs: Math.min(config.sqsTimeoutSeconds * 1000, CHECK_TIMEOUT_MS),
    ...(credentials === undefined ? {} : { credentials }),
  });
  try {
    const [depth, settings] = await Promise.all([clients.queue.depth(), clients.queue.settings()]);
    return {
      name: 'queue',
      ok: true,
      detail: `GetQueueAttributes answered the ${config.sqsClient} client: about ${depth.visible} messages visible, ${depth.inFlight} in flight; visibility timeout ${settings.visibilityTimeoutSeconds} s`,
    };
  } catch (err) {
    return { name: 'queue', ok: false, detail: `GetQueueAttributes failed (${config.sqsClient} client): ${describeError(err)}` };
  } finally {
    await clients.close();
  }
}

/** Connects to Postgres, then checks user_logins without creating it. */
async function checkDatabase(config: RunConfig): Promise<CheckResult[]> {
  const client = new pg.Client({
    connectionString: config.databaseUrl,
    application_name: 'login-etl check',
    connectionTimeoutMillis: CHECK_TIMEOUT_MS,
    statement_timeout: CHECK_TIMEOUT_MS,
  });
  // A connection dropped after the checks must not crash the process.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    return [
      { name: 'database', ok: false, detail: `cannot connect: ${describeError(err)}` },
      { name: 'table', ok: false, detail: 'not checked: no database connection' },
    ];
  }
  try {
    const { rows } = await client.query<{ version: string; database: string; user: string }>(
      `SELECT current_setting('server_version') AS version, current_database() AS database, current_user AS user`,
    );
    const info = rows[0];
    const database: CheckResult = { name: 'database', ok: true, detail: `connected to ${info?.database ?? '?'} as ${info?.user ?? '?'} (PostgreSQL ${info?.version ?? '?'})` };
    return [database, await checkTable(client)];
  } catch (err) {
    return [{ name: 'database', ok: false, detail: describeError(err) }];
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function checkTable(client: pg.Client): Promise<CheckResult> {
  const missing = await missingUserLoginsColumns(client);
  if (missing === undefined) {
    // A database the pipeline has not touched yet is ready if run may create what it needs.
    const { rows: may } = await client.query<{ create: boolean }>(
      `SELECT has_database_privilege(current_database(), 'CREATE') AND has_schema_privilege(current_schema(), 'CREATE') AS create`,
    );
    if (may[0]?.create === true) {
      return { name: 'table', ok: true, detail: 'user_logins does not exist yet: the pipeline has not run against this database; the first `run` (or `login-etl migrate`) creates it, and this user may' };
    }
    return { name: 'table', ok: false, detail: 'user_logins does not exist and this user may not create it: run `login-etl migrate` as the database owner' };
  }
  if (missing.length > 0) return { name: 'table', ok: false, detail: `user_logins lacks the column(s) ${missing.join(', ')}` };
  const { rows } = await client.query<{ insert: boolean }>(`SELECT has_table_privilege('user_logins', 'INSERT') AS insert`);
  if (rows[0]?.insert !== true) return { name: 'table', ok: false, detail: 'user_logins has its columns, but this user may not INSERT into it' };
  return { name: 'table', ok: true, detail: `user_logins has the ${USER_LOGINS_COLUMNS.length} columns (${USER_LOGINS_COLUMNS.join(', ')}) and accepts inserts` };
}

/** Every check, queue and database at once. */
export async function runChecks(config: RunConfig, credentials?: StaticCredentials): Promise<CheckResult[]> {
  // The key parsed (strength, format, fit to the mode, no private key) or the caller would have stopped with exit 2.
  const key: CheckResult = { name: 'key', ok: true, detail: `${config.maskMode} masking with key id ${config.piiKey.id} from ${config.keySource ?? 'the environment'}` };
  const [queue, database] = await Promise.all([checkQueue(config, credentials), checkDatabase(config)]);
  return [key, queue, ...database];
}

/** One line per check: `ok   queue: ...` or `FAIL table: ...`. */
export function formatCheck(result: CheckResult): string {
  return `${result.ok ? 'ok  ' : 'FAIL'} ${result.name}: ${result.detail}`;
}
