import { generateSampleEvents } from '../../src/embedded/sample-data.js';
import { sendLines } from '../../src/send.js';
import { query, type Servers } from './servers.js';

/** A fresh queue loaded with `count` generated events (1% malformed); returns its URL and the counts. */
export async function loadedQueue(servers: Pick<Servers, 'queue' | 'sqsClient'>, count: number, seed: number, attributes?: Record<string, string>) {
  const queueUrl = await servers.queue(attributes);
  const events = generateSampleEvents({ count, seed });
  await sendLines(servers.sqsClient, queueUrl, events.map((e) => e.body));
  const valid = events.filter((e) => e.valid).length;
  return { queueUrl, events, valid, invalid: events.length - valid };
}

/** What a user would check after a run: rows, distinct users, rejections and ledger entries. */
export async function endState(databaseUrl: string) {
  const [row] = await query<{ rows: number; users: number; rejected: number; rejectedIds: number; ledger: number; ledgerWritten: number }>(
    databaseUrl,
    `SELECT (SELECT count(*)::int FROM user_logins) AS rows,
            (SELECT count(DISTINCT user_id)::int FROM user_logins) AS users,
            (SELECT count(*)::int FROM login_etl.rejected_messages) AS rejected,
            (SELECT count(DISTINCT message_id)::int FROM login_etl.rejected_messages) AS "rejectedIds",
            (SELECT count(*)::int FROM login_etl.processed_messages) AS ledger,
            (SELECT count(*)::int FROM login_etl.processed_messages WHERE outcome = 'written') AS "ledgerWritten"`,
  );
  if (row === undefined) throw new Error('no end state');
  return row;
}

/** The end state of a drain that lost and duplicated nothing: every valid event once, every invalid one rejected once. */
export function exactEndState(valid: number, invalid: number): Awaited<ReturnType<typeof endState>> {
  return { rows: valid, users: valid, rejected: invalid, rejectedIds: invalid, ledger: valid + invalid, ledgerWritten: valid };
}
