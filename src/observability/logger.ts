/**
 * Structured logs with pino. Nothing in login-etl logs a message body or a raw PII value; the
 * redaction below is the second line of defence should a PII-named field ever reach a log call.
 */
import { pino, type Logger } from 'pino';
import type { LogLevel } from '../config.js';

export type { Logger };

export const REDACTED_PATHS = ['ip', 'device_id', 'body', '*.ip', '*.device_id', '*.body', 'piiKey', '*.piiKey', 'databaseUrl', '*.databaseUrl', 'original', '*.original', 'sealed', '*.sealed'];

export function createLogger(level: LogLevel, destination: 1 | 2 = 1): Logger {
  return pino(
    {
      name: 'login-etl',
      level,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ dest: destination, sync: true }),
  );
}
