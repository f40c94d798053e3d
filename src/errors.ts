/**
 * The failure classes of login-etl. Each error carries its cause and says whether a retry can
 * help, so callers decide in one place what to do with it.
 */

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
  readonly retryable: boolean;
  constructor(message: string, options: { cause: unknown; retryable: boolean }) {
    super(message, { cause: options.cause });
    this.retryable = options.retryable;
  }
}

/** Writing to Postgres failed. */
export class SinkError extends Error {
  override readonly name = 'SinkError';
  readonly retryable: boolean;
  constructor(message: string, options: { cause: unknown; retryable: boolean }) {
    super(message, { cause: options.cause });
    this.retryable = options.retryable;
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

/** A short, PII-free description of an unknown thrown value, for logs. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' ? `${err.name} ${code}: ${err.message}` : `${err.name}: ${err.message}`;
  }
  return String(err);
}
