/**
 * `login-etl unmask`: recovers originals for key holders, and records every use in
 * `login_etl.unmask_audit` (who, why, when, how many values, which keys; never the values).
 * The audit row is committed before anything is printed, so no original leaves without a record.
 */
import type pg from 'pg';
import { recordAudit } from './audit.js';
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

/** The first column of every row of a query, run read-only so that it cannot change anything. */
export async function valuesFromQuery(pool: pg.Pool, sql: string): Promise<string[]> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN READ ONLY');
    const result = await client.query({ text: sql, rowMode: 'array' });
    await client.query('ROLLBACK');
    return (result.rows as unknown[][]).map((row) => row[0]).filter((v): v is string => typeof v === 'string');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
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
