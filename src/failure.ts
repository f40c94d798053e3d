/**
 * The failure policy of login-etl, in one place. Whoever catches a failure from Postgres, SQS or
 * the dead-letter queue asks `classify` what it is and does what its kind says:
 *
 * - `transient`: the dependency is down or busy (connection refused or lost, throttling, 5xx,
 *   server shutdown, too many connections, serialization failure, deadlock, lock timeout). Back
 *   off with jitter, report not ready, keep the messages (their visibility is extended) and try
 *   again.
 * - `row-refused`: the dependency refuses one item for its content and would take the others:
 *   a row Postgres rejects with an SQLSTATE of class 22 (data exception) or 23 (integrity
 *   constraint), or an entry SQS refuses in a batch call as the sender's fault. Split, and
 *   reject exactly those items.
 * - `broken`: the dependency answers but refuses the work itself: no privilege (42501), an
 *   undefined table or column (42P01, 42703), a read-only transaction (25006), a queue that does
 *   not exist, denied access, missing credentials, and anything not listed. Hold the messages,
 *   back off up to the cap, report not ready; never split, never poison, never forward.
 *
 * Poison is not a failure kind: a message is poison because of its own receive count, never
 * because a dependency is broken. Every change of state is logged once, not every attempt.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, DeadLetterError, describeError as describe, SinkError, SourceError, UnavailableError, UnstorableRejectionError } from './errors.js';
import type { Dependency, Health } from './observability/health.js';
import type { Logger } from './observability/logger.js';

export type FailureKind = 'transient' | 'row-refused' | 'broken';

export interface Failure {
  readonly kind: FailureKind;
  /** The dependency at fault. */
  readonly dependency: Dependency;
  /** A short, PII-free description, for logs and /readyz. */
  readonly reason: string;
}

/** How people read a dependency's name in messages. */
export const DEPENDENCY_NAMES: Readonly<Record<Dependency, string>> = {
  postgres: 'Postgres',
  sqs: 'SQS',
  'dead-letter-queue': 'the dead-letter queue',
};

/**
 * SQLSTATEs after which the same statement can succeed: connection failures (08), resource
 * exhaustion such as too many connections (53), server shutdown (57P01-57P03), serialization
 * failures (40001), deadlocks (40P01), lock timeouts (55P03) and statements cancelled by their
 * deadline (57014: `--statement-timeout-seconds`, a database too busy or a lock held too long,
 * as a call to SQS past its deadline is).
 */
const TRANSIENT_SQLSTATE = /^(08|53|57P0[1-3]|57014|40001|40P01|55P03)/;
/** Data exceptions (22) and integrity constraint violations (23): the row, not the database. */
const ROW_REFUSED_SQLSTATE = /^(22|23)/;
/** Socket and DNS failures: the dependency could not be reached, or the connection broke. */
export const NETWORK_CODES: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);
/**
 * node-postgres reports a dropped connection, a pool time-out or no answer within the client's
 * own query deadline (`query_timeout`, the statement timeout plus a margin) without a code.
 */
const PG_CONNECTION_MESSAGES = /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Query read timeout/i;
/**
 * SQS error types a later try can get past, whatever their status: throttling, overload, SQS's
 * own failures, and an answer that could not be read (a truncated or mangled 2xx body).
 */
const TRANSIENT_SQS_TYPES = /Throttl|OverLimit|ServiceUnavailable|InternalError|InternalFailure|^MalformedResponse$/;
/** Credentials that expired: fresh ones from the chain get past it (both SQS clients refresh after it). */
const EXPIRED_CREDENTIAL_TYPES = new Set(['ExpiredToken', 'ExpiredTokenException', 'RequestExpired']);
/** Refusals because the request was signed at the wrong time (the SDK's clock-skew codes). */
const CLOCK_SKEW_TYPES = new Set(['RequestTimeTooSkewed', 'RequestInTheFuture']);
/** Signature refusals that are about time only when their message says so; otherwise a wrong secret. */
const SIGNATURE_TYPES = new Set(['SignatureDoesNotMatch', 'InvalidSignatureException']);
const SKEW_MESSAGE = /expired|earlier than|later than|too skewed|time/i;

/** An SQS refusal because the request's signing time was too far from the server's. */
export function isClockSkew(err: SourceError): boolean {
  if (err.type === undefined) return false;
  return CLOCK_SKEW_TYPES.has(err.type) || (SIGNATURE_TYPES.has(err.type) && SKEW_MESSAGE.test(err.message));
}

/** After this failure a client asks the credential chain for fresh credentials before its next call. */
export function needsFreshCredentials(err: SourceError): boolean {
  return (err.type !== undefined && EXPIRED_CREDENTIAL_TYPES.has(err.type)) || isClockSkew(err);
}

/**
 * What a failure is. `dependency` is what the caller was talking to; errors that know their
 * dependency (a SinkError, a SourceError, a DeadLetterError) say so themselves.
 */
export function classify(err: unknown, dependency: Dependency): Failure {
  if (err instanceof DeadLetterError) {
    const inner = classify(err.cause, 'dead-letter-queue');
    return { kind: inner.kind === 'row-refused' ? 'broken' : inner.kind, dependency: 'dead-letter-queue', reason: describe(err) };
  }
  if (err instanceof UnstorableRejectionError) return { kind: 'broken', dependency: 'postgres', reason: describe(err) };
  if (err instanceof SinkError) return { kind: postgresKind(err.cause), dependency: 'postgres', reason: describe(err) };
  if (err instanceof SourceError) {
    return { kind: sqsKind(err), dependency: dependency === 'postgres' ? 'sqs' : dependency, reason: describe(err) };
  }
  if (dependency === 'postgres') return { kind: postgresKind(err), dependency, reason: describe(err) };
  return { kind: 'broken', dependency, reason: describe(err) };
}

/**
 * An entry SQS did not accept in a batch call (SendMessageBatch, DeleteMessageBatch, ...): the
 * sender's fault is about that entry and lasts (`row-refused`); SQS's own can pass later.
 */
export function classifyBatchEntry(entry: { readonly SenderFault?: boolean | undefined }): 'row-refused' | 'transient' {
  return entry.SenderFault === true ? 'row-refused' : 'transient';
}

function postgresKind(err: unknown): FailureKind {
  if (!(err instanceof Error)) return 'broken';
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (TRANSIENT_SQLSTATE.test(code) || NETWORK_CODES.has(code)) return 'transient';
    if (ROW_REFUSED_SQLSTATE.test(code)) return 'row-refused';
    return 'broken';
  }
  return PG_CONNECTION_MESSAGES.test(err.message) ? 'transient' : 'broken';
}

function sqsKind(err: SourceError): FailureKind {
  // No credentials, or a region that contradicts the queue URL: a setting to fix, not a wait.
  if (err.type === 'CredentialsProviderError' || err.cause instanceof ConfigError) return 'broken';
  if ((err.cause as { $retryable?: unknown } | undefined)?.$retryable) return 'transient';
  // Retried after a credential refresh (and, for skew, with the server's time).
  if (needsFreshCredentials(err)) return 'transient';
  if (err.type !== undefined && TRANSIENT_SQS_TYPES.test(err.type)) return 'transient';
  // No answer at all: the network.
  if (err.status === undefined) return 'transient';
  return err.status >= 500 || err.status === 429 ? 'transient' : 'broken';
}

/** Exponential backoff with full jitter: a random delay up to min(max, base * 2^(attempt-1)). */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  return Math.random() * Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 20));
}

/**
 * The state of one dependency as the pipeline sees it: working, or failing (transient or broken)
 * since a moment. A change of state is logged once, and attempts in between only at debug;
 * readiness follows it; a drain reads how long it has been failing.
 */
export class DependencyState {
  #failure: Failure | undefined;
  /** Monotonic time of the first failure since the last success. */
  #since: number | undefined;

  constructor(
    readonly dependency: Dependency,
    private readonly context: { readonly log: Logger; readonly health?: Health | undefined; readonly clock: () => number },
  ) {}

  /** The failure that holds now, if any. */
  get failure(): Failure | undefined {
    return this.#failure;
  }

  /** Milliseconds since the dependency started failing without a success in between; 0 while it works. */
  failingForMs(): number {
    return this.#since === undefined ? 0 : this.context.clock() - this.#since;
  }

  /** Records a failed attempt; logs `message` at warn (transient) or error (broken) when the state changes. */
  failed(failure: Failure, message: string, fields: Readonly<Record<string, unknown>> = {}): void {
    const { log, health, clock } = this.context;
    const changed = this.#failure?.kind !== failure.kind;
    this.#since ??= clock();
    this.#failure = failure;
    const text = `${failure.kind}: ${failure.reason}`;
    if (failure.kind === 'broken') {
      health?.hold(this.dependency, text);
    } else {
      health?.hold(this.dependency, undefined);
      health?.report(this.dependency, false, text);
    }
    const entry = { dependency: this.dependency, kind: failure.kind, err: failure.reason, ...fields };
    if (!changed) log.debug(entry, message);
    else if (failure.kind === 'broken') log.error(entry, message);
    else log.warn(entry, message);
  }

  /** Records a successful call; logs the end of a failure once. */
  succeeded(): void {
    const { log, health, clock } = this.context;
    if (this.#failure !== undefined) {
      const failedForMs = Math.round(clock() - (this.#since ?? clock()));
      log.info({ dependency: this.dependency, kind: this.#failure.kind, failedForMs }, `${DEPENDENCY_NAMES[this.dependency]} works again`);
      this.#failure = undefined;
      this.#since = undefined;
      health?.hold(this.dependency, undefined);
    }
    health?.report(this.dependency, true);
  }
}

/** Errors raised before a request exists on the wire: nothing was sent. */
const NOT_CONNECTED_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);
const TLS_CODE = /^(ERR_TLS_|CERT_)|^(UNABLE_TO_VERIFY_LEAF_SIGNATURE|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)$/;
/** Failures before any request: no credentials, a bad setting. */
const BEFORE_REQUEST_NAMES = new Set(['CredentialsProviderError', 'ConfigError', 'TokenProviderError']);

/**
 * Whether a request that failed may still have been carried out, for sends that must not be
 * repeated (the dead-letter queue). No: SQS answered with a client error (4xx), or the failure
 * came before a request was on the wire (no connection, TLS refused, no credentials, a bad
 * setting). Yes: anything else, a server error (5xx, which can come after the message was
 * queued), an answer of success that could not be read, a connection cut or a deadline.
 */
export function mayHaveArrived(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 8; e = (e as { cause?: unknown }).cause, depth += 1) {
    const status = (e as { $metadata?: { httpStatusCode?: unknown } }).$metadata?.httpStatusCode ?? (e as { status?: unknown }).status;
    if (typeof status === 'number') return status < 400 || status >= 500;
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && (NOT_CONNECTED_CODES.has(code) || TLS_CODE.test(code))) return false;
    const name = (e as { name?: unknown }).name;
    const type = (e as { type?: unknown }).type;
    if ((typeof name === 'string' && BEFORE_REQUEST_NAMES.has(name)) || (typeof type === 'string' && BEFORE_REQUEST_NAMES.has(type))) return false;
  }
  return true;
}

export interface RetryContext {
  readonly log: Logger;
  readonly health?: Health | undefined;
  /** Ends the wait: the failure that held is thrown as an UnavailableError. */
  readonly signal: AbortSignal;
  /** Gives up once the dependency has failed this long (a drain); undefined: waits for as long as it takes (`run`). */
  readonly giveUpAfterMs: number | undefined;
}

/**
 * Runs `step` until it succeeds, as start-up does with its first calls to Postgres (migrations,
 * sealing old bodies): a transient failure is retried with backoff, logged once per change of
 * state and shown on /readyz; anything else is thrown at once. Gives up after `giveUpAfterMs`,
 * naming the dependency and the setting.
 */
export async function retryWhileTransient<T>(dependency: Dependency, step: () => Promise<T>, message: string, context: RetryContext): Promise<T> {
  const state = new DependencyState(dependency, { log: context.log, health: context.health, clock: () => performance.now() });
  for (let attempt = 1; ; attempt += 1) {
    try {
      const value = await step();
      state.succeeded();
      return value;
    } catch (err) {
      const failure = classify(err, dependency);
      if (failure.kind !== 'transient') throw err;
      state.failed(failure, message);
      const forMs = state.failingForMs();
      if (context.giveUpAfterMs !== undefined && forMs >= context.giveUpAfterMs) {
        throw new UnavailableError(`${DEPENDENCY_NAMES[dependency]} could not be reached for ${Math.round(context.giveUpAfterMs / 1000)} s (--unreachable-timeout-seconds): ${failure.reason}`, { cause: err, dependency, forMs: context.giveUpAfterMs });
      }
      try {
        await sleep(Math.max(50, backoffMs(attempt, 200, 5_000)), undefined, { signal: context.signal });
      } catch {
        throw new UnavailableError(`stopped while waiting for ${DEPENDENCY_NAMES[dependency]}: ${failure.reason}`, { cause: err, dependency });
      }
    }
  }
}
