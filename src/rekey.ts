/**
 * `login-etl rekey`: after the active key changed, rewrites the values of earlier keys to the
 * active one, so that equal inputs compare equal again across old and new rows. Works in
 * `siv` mode (decrypt, encrypt again) and in `vault` mode (open the vault entry, make the new
 * token, seal again, add the new vault entry). `hmac` values are one-way and cannot be rewritten.
 *
 * Online: each transaction locks at most `batchSize` rows (FOR UPDATE) within a bounded range of
 * table pages (a TID range scan), so the pipeline keeps inserting while it runs, and a crash
 * loses nothing: rewritten rows are committed, the rest are found again by the next run. Only the
 * last step of vault mode, deleting old vault entries, holds the pipeline's writes off, for one
 * statement (deleteUnreferencedVault).
 */
import type pg from 'pg';
import type { Logger } from './observability/logger.js';
import { resealBodies } from './sink/rejected.js';
import { withTransaction } from './sink/transaction.js';
import { readVault } from './sink/vault.js';
import type { KeyRing } from './transform/key.js';
import { createMasker, PII_FIELDS, type Masker, type PiiField, type VaultEntry } from './transform/mask.js';
import { Recoverer, type VaultRow } from './transform/recover.js';
import { loadSealedBox } from './transform/sealed-box.js';

export interface RekeyOptions {
  readonly mode: 'siv' | 'vault';
  readonly batchSize: number;
  readonly log: Logger;
  /** Table pages scanned per step; small enough that one step is quick. */
  readonly pagesPerStep?: number;
}

export interface RekeyReport {
  /** user_logins rows with at least one value rewritten. */
  rows: number;
  /** rejected_messages bodies sealed again under the active key. */
  bodies: number;
  /** Values and bodies of earlier keys that could not be rewritten (key missing or retired, no vault entry, altered). */
  unrecoverable: number;
  /** Vault entries of earlier keys removed once nothing refers to them any more. */
  vaultEntriesRemoved: number;
}

/** Rewrites the masked values of user_logins rows under the active key. */
class Rewriter {
  readonly #prefix: string;
  readonly #activePrefix: string;

  constructor(
    readonly masker: Masker,
    private readonly recoverer: Recoverer,
    readonly mode: 'siv' | 'vault',
  ) {
    this.#prefix = mode === 'siv' ? 'siv:' : 'hmac:';
    this.#activePrefix = `${this.#prefix}${masker.keyId}:`;
  }

  get prefix(): string {
    return this.#prefix;
  }

  get activePrefix(): string {
    return this.#activePrefix;
  }

  isStale(value: string | null): value is string {
    return value !== null && value.startsWith(this.#prefix) && !value.startsWith(this.#activePrefix);
  }

  /** The value under the active key, or undefined when it cannot be rewritten. */
  rewrite(value: string, vault: Map<string, VaultRow>, sealed: VaultEntry[], field?: PiiField): string | undefined {
    const recovery = this.recoverer.recover(value, this.mode === 'vault' ? vault.get(value) : undefined, field);
    if (recovery.kind !== 'recovered') return undefined;
    return this.masker.mask(recovery.field, recovery.original, sealed);
  }
}

async function insertVault(client: pg.ClientBase, entries: readonly VaultEntry[]): Promise<void> {
  if (entries.length === 0) return;
  await client.query(
    `INSERT INTO login_etl.pii_vault (token, key_id, field, sealed)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[])
         ON CONFLICT (token) DO NOTHING`,
    [entries.map((e) => e.token), entries.map((e) => e.keyId), entries.map((e) => e.field), entries.map((e) => Buffer.from(e.sealed))],
  );
}

/**
 * Vault entries of earlier keys ($2 is the active key id, $1 its token prefix) whose token no
 * value refers to: neither user_logins (both columns, read in one scan) nor a rejected body stored
 * before sealing that no `run` has sealed yet (legacy_body, values found there by shape). Bodies
 * sealed since hold no tokens of their own; tokens inside a sealed legacy body are not looked
 * for (docs/pii.md). Only values not of the active key are hashed, which are few once the rows
 * are rewritten.
 */
const DELETE_UNREFERENCED_VAULT = `
DELETE FROM login_etl.pii_vault v
 WHERE v.key_id <> $2
   AND NOT EXISTS (
       SELECT 1
         FROM (SELECT t.token
                 FROM user_logins u
                CROSS JOIN LATERAL (VALUES (u.masked_ip), (u.masked_device_id)) AS t (token)
                WHERE NOT starts_with(u.masked_ip, $1) OR NOT starts_with(u.masked_device_id, $1)
               UNION ALL
               SELECT m[1]
                 FROM login_etl.rejected_messages r
                CROSS JOIN LATERAL regexp_matches(r.legacy_body, 'hmac:[A-Za-z0-9._-]{1,16}:[A-Za-z0-9_-]+', 'g') AS m
              ) AS referenced (token)
        WHERE referenced.token = v.token
          AND NOT starts_with(referenced.token, $1))`;

/**
 * Deletes the vault entries of earlier keys that no value refers to any more, race-free against
 * the pipeline.
 *
 * The pipeline commits its rows and their vault entries in one statement, the entries with
 * INSERT ... ON CONFLICT (token) DO NOTHING (write-batch.ts): an instance still on the old key
 * that masks a value seen before neither adds nor locks its entry, so an entry this DELETE found
 * unreferenced could be the only original of a row committed a moment later. SHARE mode on
 * user_logins waits for the writes in flight and holds off new ones until this transaction
 * ends. The same statement writes rejected_messages and pii_vault, and Postgres takes its locks
 * on all three tables before it writes anything, so this one lock holds off all of it. The
 * DELETE's snapshot is taken once the lock is granted (READ COMMITTED), so it sees every row
 * committed before.
 *
 * One statement, one scan of each table, hashed into one anti-join: user_logins has no index on
 * the masked columns, so deleting in batches would scan it once per batch, each under the lock.
 * The pipeline's writes wait for this one statement instead. An entry still referenced is never
 * deleted, whether its value was left behind as unrecoverable or written after the rewrite.
 */
async function deleteUnreferencedVault(client: pg.ClientBase, activePrefix: string, activeKeyId: string): Promise<number> {
  await client.query('LOCK TABLE user_logins IN SHARE MODE');
  const { rowCount } = await client.query(DELETE_UNREFERENCED_VAULT, [activePrefix, activeKeyId]);
  return rowCount ?? 0;
}

export async function rekey(pool: pg.Pool, ring: KeyRing, options: RekeyOptions): Promise<RekeyReport> {
  const { mode, batchSize, log } = options;
  const pagesPerStep = options.pagesPerStep ?? 128;
  const box = mode === 'vault' ? await loadSealedBox() : undefined;
  const rewriter = new Rewriter(await createMasker(mode, ring.active), new Recoverer(ring, box), mode);
  const report: RekeyReport = { rows: 0, bodies: 0, unrecoverable: 0, vaultEntriesRemoved: 0 };

  // user_logins, one range of pages at a time. Rows that move while being rewritten land on
  // later pages already rewritten; pages added by the pipeline meanwhile are scanned too.
  for (let start = 0; ; start += pagesPerStep) {
    const [size] = (await pool.query<{ pages: number }>(`SELECT (pg_relation_size('user_logins') / current_setting('block_size')::int)::int AS pages`)).rows;
    if (start >= (size?.pages ?? 0)) break;
    const skipped: string[] = [];
    for (;;) {
      const done = await withTransaction(pool, async (client) => {
        const { rows } = await client.query<{ ctid: string; masked_ip: string | null; masked_device_id: string | null }>(
          `SELECT ctid::text AS ctid, masked_ip, masked_device_id FROM user_logins
            WHERE ctid >= format('(%s,0)', $1::int)::tid AND ctid < format('(%s,0)', $1::int + $2::int)::tid
              AND ctid <> ALL($3::tid[])
              AND ((starts_with(masked_ip, $4) AND NOT starts_with(masked_ip, $5))
                OR (starts_with(masked_device_id, $4) AND NOT starts_with(masked_device_id, $5)))
            LIMIT $6
              FOR UPDATE`,
          [start, pagesPerStep, skipped, rewriter.prefix, rewriter.activePrefix, batchSize],
        );
        if (rows.length === 0) return true;
        const stale = rows.flatMap((r) => [r.masked_ip, r.masked_device_id]).filter((v) => rewriter.isStale(v));
        const vault = mode === 'vault' ? await readVault(client, stale) : new Map<string, VaultRow>();
        const sealed: VaultEntry[] = [];
        const updates = { ctid: [] as string[], ip: [] as (string | null)[], device: [] as (string | null)[] };
        for (const row of rows) {
          const next: Record<PiiField, string | null> = { ip: row.masked_ip, device_id: row.masked_device_id };
          let failed = false;
          for (const field of PII_FIELDS) {
            const value = next[field];
            if (!rewriter.isStale(value)) continue;
            const rewritten = rewriter.rewrite(value, vault, sealed, field);
            if (rewritten === undefined) {
              failed = true;
              report.unrecoverable += 1;
            } else next[field] = rewritten;
          }
          if (failed) skipped.push(row.ctid);
          if (next.ip === row.masked_ip && next.device_id === row.masked_device_id) continue;
          updates.ctid.push(row.ctid);
          updates.ip.push(next.ip);
          updates.device.push(next.device_id);
        }
        await insertVault(client, sealed);
        if (updates.ctid.length > 0) {
          const { rows: moved } = await client.query<{ before: string; after: string }>(
            `UPDATE user_logins u SET masked_ip = v.ip, masked_device_id = v.device
               FROM unnest($1::tid[], $2::text[], $3::text[]) AS v(ctid, ip, device)
              WHERE u.ctid = v.ctid
          RETURNING v.ctid::text AS before, u.ctid::text AS after`,
            [updates.ctid, updates.ip, updates.device],
          );
          // An updated row has a new ctid: a row left with an unrecoverable value is skipped under it.
          const after = new Map(moved.map((m) => [m.before, m.after]));
          for (const [i, ctid] of skipped.entries()) skipped[i] = after.get(ctid) ?? ctid;
        }
        report.rows += updates.ctid.length;
        log.info({ table: 'user_logins', rows: updates.ctid.length, fromPage: start }, 'rekey batch committed');
        return false;
      });
      if (done) break;
    }
  }

  // rejected_messages: sealed bodies of earlier keys are opened and sealed again.
  const resealed = await resealBodies(pool, ring, box, rewriter.masker.bodies);
  report.bodies = resealed.resealed;
  report.unrecoverable += resealed.unopened;
  log.info({ table: 'login_etl.rejected_messages', bodies: resealed.resealed }, 'rekey of rejected bodies done');

  if (mode === 'vault') {
    report.vaultEntriesRemoved = await withTransaction(pool, (client) => deleteUnreferencedVault(client, rewriter.activePrefix, ring.active.id));
  }
  return report;
}
