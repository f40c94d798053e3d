/**
 * The audit of every use of originals and secrets (`login_etl.unmask_audit`, migration 005).
 * A row is recorded and committed before anything is shown, through the SECURITY DEFINER
 * function `login_etl.record_audit`, which fills in the database user itself: callers need
 * EXECUTE on it and no privilege on the table, so they can neither change nor delete rows, nor
 * write one in another database user's name. The OS user and the reason are what the client
 * says: a row proves which database login asked, not which person typed the command.
 */
import { userInfo } from 'node:os';
import type pg from 'pg';
import { AuditError } from './errors.js';
import { classify } from './failure.js';

export type AuditAction = 'unmask' | 'rejected-list' | 'rejected-show' | 'rejected-export' | 'rejected-replay';
export type AuditSource = 'arguments' | 'stdin' | 'query' | 'filter';

export interface AuditEntry {
  readonly action: AuditAction;
  readonly source: AuditSource;
  readonly reason: string | undefined;
  readonly valuesRequested: number;
  readonly valuesRecovered: number;
  readonly keyIds: readonly string[];
  /** Ids of the rejected messages a rejected-* action read; never their contents. */
  readonly messageIds?: readonly string[];
  /** The queue URL a replay sent to. */
  readonly target?: string;
}

/** The OS user running the command; falls back to the uid when there is no passwd entry. */
function osUser(): string {
  try {
    return userInfo().username;
  } catch {
    return `uid:${process.getuid?.() ?? 'unknown'}`;
  }
}

// Named arguments: the call cannot silently shift a value into the wrong column.
const RECORD_AUDIT = `
SELECT login_etl.record_audit(
         action => $1, source => $2, os_user => $3, reason => $4, values_requested => $5,
         values_recovered => $6, key_ids => $7::text[], message_ids => $8::text[], target => $9)::text AS id`;

/** SQLSTATE 42883: no such function, so migration 005 has not been applied. */
const UNDEFINED_FUNCTION = '42883';

/** Records one use and commits it; resolves with the audit id, or throws AuditError when no id came back. */
export async function recordAudit(pool: pg.Pool, entry: AuditEntry): Promise<string> {
  let id: string | null | undefined;
  try {
    // One statement outside any transaction: it has committed when the pool hands back its result.
    const { rows } = await pool.query<{ id: string | null }>(RECORD_AUDIT, [
      entry.action,
      entry.source,
      osUser(),
      entry.reason ?? null,
      entry.valuesRequested,
      entry.valuesRecovered,
      [...entry.keyIds],
      entry.messageIds === undefined ? null : [...entry.messageIds],
      entry.target ?? null,
    ]);
    id = rows[0]?.id;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    const hint = code === UNDEFINED_FUNCTION ? ' (run `login-etl migrate` as the owner)' : '';
    const message = err instanceof Error ? err.message : String(err);
    throw new AuditError(`the audit record could not be written, so nothing is shown: ${message}${hint}`, {
      cause: err,
      retryable: classify(err, 'postgres').kind === 'transient',
    });
  }
  if (id === null || id === undefined) {
    throw new AuditError('the audit record was not stored (login_etl.record_audit returned no id; a trigger on login_etl.unmask_audit may drop rows), so nothing is shown', {
      retryable: false,
    });
  }
  return id;
}
