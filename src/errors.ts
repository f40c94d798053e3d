/**
 * The failure classes of login-etl. Each error carries its cause and the facts a decision needs
 * (SQS's status and error type, Postgres's SQLSTATE in its cause); what to do about a failure is
 * decided in one place, `classify` in src/failure.ts.
 */
import type { Dependency } from './observability/health.js';

/** A setting is missing or invalid. The CLI prints the message and exits with code 2. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly setting: string,
    message: string,
  ) {
    super(`${setting}: ${message}`);
  }
}

/** The command line itself is wrong (unknown command or flag). Exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Talking to SQS failed. */
export class SourceError extends Error {
  override readonly name = 'SourceError';
  /** HTTP status of SQS's answer; undefined when no answer came (the network failed). */
  readonly status: number | undefined;
  /** SQS's error type (ThrottlingException, QueueDoesNotExist, ...), when there is one. */
  readonly type: string | undefined;
  constructor(message: string, options: { cause: unknown; status?: number | undefined; type?: string | undefined }) {
    super(message, { cause: options.cause });
    this.status = options.status;
    this.type = options.type;
  }
}

/** Writing to Postgres failed; the cause is node-postgres's error, with its SQLSTATE as `code`. */
export class SinkError extends Error {
  override readonly name: string = 'SinkError';
  constructor(message: string, options: { cause: unknown }) {
    super(message, { cause: options.cause });
  }
}

/**
 * The use of originals could not be recorded in the audit (no id came back, or the database
 * refused the call). Nothing may be shown without a record, so the command stops.
 */
export class AuditError extends Error {
  override readonly name = 'AuditError';
  readonly retryable: boolean;
  constructor(message: string, options: { cause?: unknown; retryable: boolean }) {
    super(message, { cause: options.cause });
    this.retryable = options.retryable;
  }
}

/**
 * Postgres refuses to store a rejection: the message has nowhere left to go. Not a bad row (a
 * rejection holds nothing of the body in clear) but a table that cannot take what login-etl
 * writes, so it is held like any other broken sink.
 */
export class UnstorableRejectionError extends SinkError {
  override readonly name = 'UnstorableRejectionError';
}

/** Forwarding rejected messages to the dead-letter queue failed; the cause is SQS's failure. */
export class DeadLetterError extends Error {
  override readonly name = 'DeadLetterError';
  constructor(message: string, options: { cause: unknown }) {
    super(message, { cause: options.cause });
  }
}

/** A drain gave up: a dependency failed for longer than `--unreachable-timeout-seconds`. Exit code 1. */
export class UnavailableError extends Error {
  override readonly name = 'UnavailableError';
  /** The dependency that could not be reached or refused the work, and for how long, when known. */
  readonly dependency: Dependency | undefined;
  readonly forMs: number | undefined;

  constructor(message: string, options: { cause?: unknown; dependency?: Dependency; forMs?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.dependency = options.dependency;
    this.forMs = options.forMs;
  }
}

/**
 * A short, PII-free description of an unknown thrown value, for logs and error lines: the
 * message, then its code (a Postgres SQLSTATE, a Node.js system error) unless the message has it
 * already. No class names: they mean nothing to the person reading (SQS's error types stay).
 */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    // SQS's error types (AccessDenied, InvalidMessageContents) arrive as names and say something;
    // class names (SourceError, pg's `error`) do not.
    const named = /error$/i.test(err.name) ? '' : `${err.name}: `;
    const message = `${named}${err.message === '' ? err.name : err.message}`;
    if (typeof code !== 'string' || message.includes(code)) return message;
    return /^[0-9A-Z]{5}$/.test(code) ? `${message} (SQLSTATE ${code})` : `${message} (${code})`;
  }
  return String(err);
}
