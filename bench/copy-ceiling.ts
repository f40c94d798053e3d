/**
 * Database ceiling: COPY of already-masked rows into user_logins. The rows are the accepted
 * events of the same sample data, parsed, validated and masked with the real HmacMasker before
 * the clock starts; only the COPY is measured. Prints one JSON line.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { generateSampleEvents } from '../src/embedded/sample-data.js';
import { PiiKey } from '../src/transform/key.js';
import { HmacMasker } from '../src/transform/mask.js';
import { transform, type LoginRow } from '../src/transform/transform.js';

export interface CopyReport {
  readonly ceiling: 'copy';
  readonly messages: number;
  readonly rows: number;
  readonly elapsedMs: number;
  readonly cpuSeconds: number;
}

/** A value in COPY's text format: \N for NULL, backslash escapes for the special characters. */
function copyText(value: string | number | null): string {
  if (value === null) return '\\N';
  return String(value).replace(/[\\\t\n\r]/g, (c) => ({ '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' })[c] ?? c);
}

function copyLine(row: LoginRow): string {
  const fields = [row.user_id, row.device_type, row.masked_ip, row.masked_device_id, row.locale, row.app_version, row.create_date];
  return `${fields.map(copyText).join('\t')}\n`;
}

const CHUNK_ROWS = 1_000;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { 'database-url': { type: 'string' }, messages: { type: 'string' }, seed: { type: 'string', default: '1' } },
  });
  const databaseUrl = values['database-url'];
  const messages = Number(values.messages);
  if (databaseUrl === undefined || !(messages > 0)) throw new Error('usage: copy-ceiling --database-url URL --messages N [--seed S]');

  const masker = new HmacMasker(new PiiKey(randomBytes(32)));
  const sentTimestampMs = Date.now();
  const chunks: string[] = [];
  let chunk: string[] = [];
  let rows = 0;
  generateSampleEvents({ count: messages, seed: Number(values.seed) }).forEach((event, i) => {
    const outcome = transform({ messageId: String(i), receiptHandle: '', body: event.body, sentTimestampMs, receiveCount: 1 }, masker);
    if (outcome.kind !== 'accepted') return;
    chunk.push(copyLine(outcome.row));
    rows += 1;
    if (chunk.length === CHUNK_ROWS) {
      chunks.push(chunk.join(''));
      chunk = [];
    }
  });
  if (chunk.length > 0) chunks.push(chunk.join(''));

  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const cpuBefore = process.cpuUsage();
    const startedAt = performance.now();
    const copy = client.query(
      copyFrom('COPY user_logins (user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date) FROM STDIN'),
    );
    await pipeline(Readable.from(chunks), copy);
    const elapsedMs = performance.now() - startedAt;
    const cpu = process.cpuUsage(cpuBefore);
    const report: CopyReport = { ceiling: 'copy', messages, rows: copy.rowCount, elapsedMs, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
    if (copy.rowCount !== rows) throw new Error(`COPY wrote ${copy.rowCount} rows, expected ${rows}`);
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } finally {
    await client.end();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`copy-ceiling: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
