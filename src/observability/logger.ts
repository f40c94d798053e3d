/**
 * Structured logs with pino. Nothing in login-etl logs a message body or a raw PII value; the
 * redaction below is the second line of defence should a PII-named field ever reach a log call.
 *
 * JSON lines by default, for log shippers; on a terminal (or with `--log-format pretty`) the
 * same records are formatted for people by pino-pretty, after redaction, so both show the same.
 */
import { createRequire } from 'node:module';
import { isatty } from 'node:tty';
import { pino, type DestinationStream, type Logger } from 'pino';
import type { LogFormat, LogLevel } from '../config.js';

export type { Logger };

export const REDACTED_PATHS = ['ip', 'device_id', 'body', '*.ip', '*.device_id', '*.body', 'piiKey', '*.piiKey', 'databaseUrl', '*.databaseUrl', 'original', '*.original', 'sealed', '*.sealed'];

export interface LoggerOptions {
  readonly format?: LogFormat;
  /** Called before and after each line, so a progress line on the same terminal can step aside. */
  readonly around?: { before(): void; after(): void };
}

export function createLogger(level: LogLevel, destination: 1 | 2 = 1, options: LoggerOptions = {}): Logger {
  const format = options.format ?? 'auto';
  const human = format === 'pretty' || (format === 'auto' && isatty(destination));
  // pino-pretty is loaded only when it is used: JSON logs, the usual case in production, skip it.
  let stream: DestinationStream = human
    ? (createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty'))({ destination, sync: true, colorize: isatty(destination), translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name' })
    : pino.destination({ dest: destination, sync: true });
  const { around } = options;
  if (around !== undefined) {
    const inner = stream;
    stream = {
      write(line: string) {
        around.before();
        inner.write(line);
        around.after();
      },
    };
  }
  return pino(
    {
      name: 'login-etl',
      level,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    stream,
  );
}
