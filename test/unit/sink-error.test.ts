/** What a batch's failure says when the database cannot be reached: the setting, no fake SQLSTATE. */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import pg from 'pg';
import { SinkError } from '../../src/errors.js';
import { PgSink } from '../../src/sink/postgres.js';

test('a statement to a database that refuses connections names DATABASE_URL and the address', async () => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  const pool = new pg.Pool({ connectionString: `postgres://u:p@127.0.0.1:${port}/db` });
  try {
    // Any statement will do: the connection fails first.
    const err = await new PgSink(pool).recordForwarding({ forwarded: ['m1'], refused: [] }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof SinkError, String(err));
    assert.equal(err.message, `Postgres (DATABASE_URL) could not be reached: connect ECONNREFUSED 127.0.0.1:${port}`);
  } finally {
    await pool.end();
  }
});
