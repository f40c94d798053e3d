/**
 * `login-etl unmask`: recovers originals for key holders, and records every use in
 * `login_etl.unmask_audit` (who, why, when, how many values, which keys; never the values).
 * The audit row is committed before anything is printed, so no original leaves without a record.
 */
import pg from 'pg';
import { recordAudit } from './audit.js';
import { UsageError } from './errors.js';
import { readVault } from './sink/vault.js';
import type { KeyRing } from './transform/key.js';
import { loadSealedBox } from './transform/sealed-box.js';
import { parseMasked, Recoverer, type Recovery } from './transform/recover.js';

export type UnmaskSource = 'arguments' | 'stdin' | 'query';

export interface UnmaskRequest {
  readonly values: readonly string[];
  readonly source: UnmaskSource;
  readonly reason: string | undefined;
}

export interface UnmaskReport {
  readonly results: readonly Recovery[];
  readonly recovered: number;
  readonly auditId: string;
}

/** Long enough for a scan of a large user_logins; short enough that a mistake ends by itself. */
export const QUERY_TIMEOUT_MS = 60_000;

/**
 * The first column of every row of one SQL statement. The statement cannot change anything or
 * escape:
 * - it goes through the extended protocol (a named statement: Parse, Bind, Execute), and Parse
 *   refuses more than one statement, so `COMMIT; ...` cannot end the transaction;
 * - the transaction is READ ONLY and has run a statement before it, after which Postgres refuses
 *   SET TRANSACTION READ WRITE; it is rolled back afterwards;
 * - it runs on a connection of its own, never the one that writes the audit, under a
 *   statement timeout.
 */
export async function valuesFromQuery(databaseUrl: string, sql: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'login-etl unmask --query' });
  // A connection lost while idle must not crash the process; the next query reports it.
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query('BEGIN READ ONLY');
    await client.query(`SELECT pg_catalog.set_config('statement_timeout', $1, true)`, [String(QUERY_TIMEOUT_MS)]);
    let result: pg.QueryResult<unknown[]>;
    try {
      result = await client.query<unknown[]>({ name: 'login-etl-unmask-query', text: sql, rowMode: 'array' });
    } catch (err) {
      if (err instanceof Error && /cannot insert multiple commands into a prepared statement/.test(err.message)) {
        throw new UsageError('--query must be exactly one SQL statement');
      }
      throw err;
    }
    return result.rows.map((row) => row[0]).filter((v): v is string => typeof v === 'string');
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
    await client.end().catch(() => undefined);
  }
}

export async function unmask(pool: pg.Pool, ring: KeyRing, request: UnmaskRequest): Promise<UnmaskReport> {
  const hmacValues = request.values.filter((v) => parseMasked(v)?.mode === 'hmac');
  const vault = await readVault(pool, hmacValues);
  const box = vault.size > 0 ? await loadSealedBox() : undefined;
  const recoverer = new Recoverer(ring, box);
  const results = request.values.map((value) => recoverer.recover(value, vault.get(value)));
  const recovered = results.filter((r) => r.kind === 'recovered');
  const keyIds = [...new Set(recovered.map((r) => r.keyId))].sort();
  const auditId = await recordAudit(pool, {
    action: 'unmask',
    source: request.source,
    reason: request.reason,
    valuesRequested: request.values.length,
    valuesRecovered: recovered.length,
    keyIds,
  });
  return { results, recovered: recovered.length, auditId };
}
