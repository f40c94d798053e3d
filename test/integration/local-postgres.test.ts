/**
 * The embedded Postgres started from a template (createPostgresTemplate): a copy of one initdb
 * for every server of a test run, whose connections are authenticated as each server asks.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createPostgresTemplate, startLocalPostgres, templateFrom, type PostgresTemplate } from '../../src/embedded/postgres.js';

/** The run's template when `npm test` made one; a template of this file's own otherwise. */
let made: PostgresTemplate | undefined;
let template: string;

before(async () => {
  const shared = templateFrom(process.env);
  if (shared === undefined) made = await createPostgresTemplate();
  template = shared ?? made?.dir ?? '';
});
after(() => made?.remove());

async function connects(url: string): Promise<true | string> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  } finally {
    await client.end().catch(() => undefined);
  }
}

test('a server copied from a template checks the password when its authentication says password', async () => {
  const server = await startLocalPostgres({ auth: 'password', template });
  try {
    assert.equal(await connects(server.url), true);
    const wrong = new URL(server.url);
    wrong.password = 'not-the-password';
    assert.match(String(await connects(wrong.toString())), /password authentication failed/);
  } finally {
    await server.stop();
  }
});

test('a server copied from a template trusts connections from this machine when its authentication says trust', async () => {
  const server = await startLocalPostgres({ auth: 'trust', template });
  try {
    const wrong = new URL(server.url);
    wrong.password = 'not-the-password';
    assert.equal(await connects(wrong.toString()), true);
  } finally {
    await server.stop();
  }
});
