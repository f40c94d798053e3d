/**
 * Reads of `login_etl.pii_vault`, for key holders: the sealed originals behind hmac tokens.
 */
import type pg from 'pg';
import type { PiiField } from '../transform/mask.js';
import type { VaultRow } from '../transform/recover.js';

export async function readVault(db: pg.Pool | pg.ClientBase, tokens: readonly string[]): Promise<Map<string, VaultRow>> {
  const found = new Map<string, VaultRow>();
  if (tokens.length === 0) return found;
  const { rows } = await db.query<{ token: string; key_id: string; field: PiiField; sealed: Buffer }>(
    'SELECT token, key_id, field, sealed FROM login_etl.pii_vault WHERE token = ANY($1::text[])',
    [[...new Set(tokens)]],
  );
  for (const row of rows) found.set(row.token, { keyId: row.key_id, field: row.field, sealed: row.sealed });
  return found;
}
