/**
 * `login-etl unmask`: recovers originals for key holders, and records every use in
 * `login_etl.unmask_audit` (who, why, when, how many values, which keys; never the values).
 * The audit row is committed before anything is printed, so no original leaves without a record.
 */
import pg from 'pg';
import { recordAudit } from './audit.js';
import { UsageError } from './errors.js';
import { withTransaction } from './sink/transaction.js';
import { readVault } from './sink/vault.js';
import type { KeyRing } from './transform/key.js';
import type { PiiField } from './transform/mask.js';
import { loadSealedBox } from './transform/sealed-box.js';
import { parseMasked, Recoverer, type Recovery } from './transform/recover.js';

export type UnmaskSource = 'arguments' | 'stdin' | 'query';

export interface UnmaskRequest {
  readonly values: readonly string[];
  readonly source: UnmaskSource;
  readonly reason: string | undefined;
  /** The column the values come from. Required when any value is a siv value. */
  readonly field: PiiField | undefined;
}

export interface UnmaskReport {
  readonly results: readonly Recovery[];
  readonly recovered: number;
  readonly auditId: string;
}

export interface QueriedValues {
  readonly values: string[];
  /** The column of user_logins the query's first column is, if it is masked_ip or masked_device_id. */
  readonly field: PiiField | undefined;
}

/** Long enough for a scan of a large user_logins; short enough that a mistake ends by itself. */
export const QUERY_TIMEOUT_MS = 60_000;

// Where user_logins and its masked columns are, read before the user's statement runs: that
// statement cannot then make another table stand in for it.
const MASKED_COLUMNS = `
SELECT t.oid::oid::int8::text AS table_id, ip.attnum AS ip_column, device.attnum AS device_id_column
  FROM (SELECT to_regclass('user_logins') AS oid) t
  LEFT JOIN pg_catalog.pg_attribute ip ON ip.attrelid = t.oid AND ip.attname = 'masked_ip' AND NOT ip.attisdropped
  LEFT JOIN pg_catalog.pg_attribute device ON device.attrelid = t.oid AND device.attname = 'masked_device_id' AND NOT device.attisdropped`;

/** SQLSTATE 42601: what Postgres answers to a cursor over anything but a query. */
const SYNTAX_ERROR = '42601';

/**
 * The first column of every row of one SQL statement, and which masked column it is. The
 * statement cannot change anything or escape:
 * - it is the query of a cursor, so it can only be SELECT, VALUES or TABLE (COPY TO a file or a
 *   program would otherwise run even in a READ ONLY transaction, for a privileged user);
 * - it goes through the extended protocol (a named statement: Parse, Bind, Execute), and Parse
 *   refuses more than one statement, so `COMMIT; ...` cannot end the transaction;
 * - the transaction is READ ONLY and has run a statement before it, after which Postgres refuses
 *   SET TRANSACTION READ WRITE; it is rolled back afterwards;
 * - it runs on a connection of its own, never the one that writes the audit, under a
 *   statement timeout.
 */
export async function valuesFromQuery(databaseUrl: string, sql: string): Promise<QueriedValues> {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'login-etl unmask --query' });
  // A connection lost while idle must not crash the process; the next query reports it.
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await withTransaction(client, async () => {
      await client.query(`SELECT pg_catalog.set_config('statement_timeout', $1, true)`, [String(QUERY_TIMEOUT_MS)]);
      const [columns] = (await client.query<{ table_id: string | null; ip_column: number | null; device_id_column: number | null }>(MASKED_COLUMNS)).rows;
      let result: pg.QueryResult<unknown[]>;
      try {
        // A cursor takes only SELECT, VALUES or TABLE: no COPY ... TO a file or a program, which a
        // READ ONLY transaction still allows a privileged user.
        await client.query({ name: 'login-etl-unmask-query', text: `DECLARE login_etl_unmask NO SCROLL CURSOR FOR ${sql}` });
        result = await client.query<unknown[]>({ text: 'FETCH ALL FROM login_etl_unmask', rowMode: 'array' });
      } catch (err) {
        if (err instanceof Error && /cannot insert multiple commands into a prepared statement/.test(err.message)) {
          throw new UsageError('--query must be exactly one SQL statement, a SELECT, VALUES or TABLE');
        }
        if ((err as { code?: unknown }).code === SYNTAX_ERROR) {
          throw new UsageError(`--query must be exactly one SQL statement, a SELECT, VALUES or TABLE (${err instanceof Error ? err.message : 'syntax error'})`);
        }
        throw err;
      }
      const first = result.fields[0];
      let field: PiiField | undefined;
      if (first !== undefined && columns?.table_id !== null && columns?.table_id !== undefined && String(first.tableID) === columns.table_id) {
        if (first.columnID === columns.ip_column) field = 'ip';
        else if (first.columnID === columns.device_id_column) field = 'device_id';
      }
      const values = result.rows.map((row) => row[0]).filter((v): v is string => typeof v === 'string');
      return { values, field };
    }, { readOnly: true, rollback: true });
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function unmask(pool: pg.Pool, ring: KeyRing, request: UnmaskRequest): Promise<UnmaskReport> {
  const parsed = request.values.map((v) => parseMasked(v));
  // A siv value decrypts only as the column it was made for; without a column it could be
  // moved to the other one and still come back.
  if (request.field === undefined && parsed.some((p) => p?.mode === 'siv')) {
    throw new UsageError('siv values are bound to their column: give --field ip or --field device_id');
  }
  const hmacValues = request.values.filter((_, i) => parsed[i]?.mode === 'hmac');
  const vault = await readVault(pool, hmacValues);
  const box = vault.size > 0 ? await loadSealedBox() : undefined;
  const recoverer = new Recoverer(ring, box);
  const results = request.values.map((value) => recoverer.recover(value, vault.get(value), request.field));
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
