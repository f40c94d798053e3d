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

/** Anything that takes log lines, such as a stream a test reads; a terminal only if it says so. */
export interface LogStream {
  write(line: string): unknown;
  readonly isTTY?: boolean;
}

/** A file descriptor (1 stdout, 2 stderr), written synchronously, or a stream. */
export type LogDestination = 1 | 2 | LogStream;

export function createLogger(level: LogLevel, destination: LogDestination = 1, options: LoggerOptions = {}): Logger {
  const format = options.format ?? 'auto';
  const terminal = typeof destination === 'number' ? isatty(destination) : destination.isTTY === true;
  const human = format === 'pretty' || (format === 'auto' && terminal);
  const target: DestinationStream = typeof destination === 'number' ? pino.destination({ dest: destination, sync: true }) : destination;
  let stream = target;
  if (human) {
    // pino-pretty is loaded only when it is used: JSON logs, the usual case in production, skip it.
    const { prettyFactory } = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
    const pretty = prettyFactory({ colorize: terminal, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name' });
    stream = {
      write(line: string) {
        target.write(pretty(line));
      },
    };
  }
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
