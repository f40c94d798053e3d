/**
 * A failure as the command line reports it: one line that names the dependency, the setting to
 * check and, where there is one, the flag that changes it, with no class names; and the exit
 * code: 2 when the user must change something before a retry can help, 1 otherwise.
 */
import { ConfigError, describeError, SinkError, SourceError, UnavailableError, UsageError } from '../errors.js';
import { NETWORK_CODES } from '../failure.js';

export interface FailureLine {
  readonly text: string;
  readonly exitCode: 1 | 2;
}

/** Errors of the network layer, as Node.js names them. */

interface SystemError {
  readonly code: string;
  readonly address?: string;
  readonly port?: number;
  readonly hostname?: string;
  readonly syscall?: string;
}

/** The first error in the cause chain (or among an AggregateError's errors) with a string code. */
function findCoded(err: unknown, accept: (code: string) => boolean, depth = 0): (SystemError & object) | undefined {
  if (depth > 8 || typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  const errors = (err as { errors?: unknown }).errors;
  // An AggregateError (one per address tried) carries no address itself: its first error does.
  const inner = Array.isArray(errors) ? (errors as unknown[]) : [];
  if (typeof code === 'string' && accept(code) && (inner.length === 0 || (err as SystemError).address !== undefined)) return err as SystemError;
  for (const each of inner) {
    const found = findCoded(each, accept, depth + 1);
    if (found !== undefined) return found;
  }
  if (typeof code === 'string' && accept(code)) return err as SystemError;
  return findCoded((err as { cause?: unknown }).cause, accept, depth + 1);
}

/** `refused the connection at 127.0.0.1:5432`, `could not resolve db.example`, ... */
function networkProblem(e: SystemError): string {
  const at = e.address !== undefined ? `${e.address}${e.port === undefined ? '' : `:${e.port}`}` : (e.hostname ?? 'its address');
  switch (e.code) {
    case 'ECONNREFUSED':
      return `refused the connection at ${at}`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `host ${e.hostname ?? at} could not be resolved`;
    case 'ETIMEDOUT':
      return `did not answer at ${at} (timed out)`;
    case 'ECONNRESET':
    case 'EPIPE':
      return `closed the connection at ${at}`;
    default:
      return `could not be reached at ${at} (${e.code})`;
  }
}

const DATABASE = 'database (DATABASE_URL, --database-url)';
const SQS = 'SQS (the queue URL, or AWS_ENDPOINT_URL_SQS / --sqs-endpoint when set)';

/** SQLSTATEs the user must fix in DATABASE_URL or the server's set-up before a retry can help. */
const DATABASE_SETUP: Record<string, string> = {
  '28P01': 'refused the password of this user',
  '28000': 'refused the login of this user',
  '3D000': 'does not exist on this server',
};

export function failureLine(err: unknown): FailureLine {
  if (err instanceof ConfigError || err instanceof UsageError) return { text: err.message, exitCode: 2 };
  if (err instanceof UnavailableError) {
    // A database that never answered at start-up: the same line as any other refusal, and how
    // long the drain waited for it.
    const network = err.dependency === 'postgres' ? findCoded(err.cause, (code) => NETWORK_CODES.has(code)) : undefined;
    if (network !== undefined && err.forMs !== undefined) {
      return { text: `${DATABASE} ${networkProblem(network)} (for ${Math.round(err.forMs / 1000)} s, --unreachable-timeout-seconds)`, exitCode: 1 };
    }
    return { text: err.message, exitCode: 1 };
  }
  const listen = findCoded(err, (code) => code === 'EADDRINUSE' || code === 'EACCES');
  if (listen !== undefined && listen.syscall === 'listen') {
    const port = listen.port === undefined ? '' : ` ${listen.port}`;
    const problem = listen.code === 'EADDRINUSE' ? 'is in use' : 'may not be opened by this user';
    return { text: `HTTP port${port} ${problem}: set --http-port (LOGIN_ETL_HTTP_PORT; 0 turns the HTTP server off)`, exitCode: 2 };
  }
  if (err instanceof SourceError) {
    if (err.type === 'CredentialsProviderError') return { text: err.message, exitCode: 2 };
    if (err.type === 'QueueDoesNotExist' || err.type === 'AWS.SimpleQueueService.NonExistentQueue') {
      return { text: 'SQS queue (SQS_QUEUE_URL, --queue-url) does not exist: create it with `login-etl queue create NAME`, or check the URL and the region', exitCode: 2 };
    }
    const network = findCoded(err, (code) => NETWORK_CODES.has(code));
    if (network !== undefined) return { text: `${SQS} ${networkProblem(network)}`, exitCode: 1 };
    return { text: describeError(err), exitCode: 1 };
  }
  // Anything else that failed on the network came from the database: SQS failures arrive as SourceError.
  const network = findCoded(err, (code) => NETWORK_CODES.has(code));
  if (network !== undefined) return { text: `${DATABASE} ${networkProblem(network)}`, exitCode: 1 };
  const pgCode = findCoded(err, (code) => code in DATABASE_SETUP);
  if (pgCode !== undefined) return { text: `${DATABASE} ${DATABASE_SETUP[pgCode.code] ?? ''}: ${describeError(pgCode)}`, exitCode: 2 };
  if (err instanceof SinkError) return { text: describeError(err), exitCode: 1 };
  return { text: describeError(err), exitCode: 1 };
}
