/**
 * `run`'s start: the schema and the queue's settings are asked for at once, and a queue that can
 * never be read ends the start without leaving the wait for Postgres running behind it.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { defaultRunConfig } from '../../src/config.js';
import { runPipeline } from '../../src/run.js';
import { PiiKey } from '../../src/transform/key.js';
import { silentLog } from '../helpers/fixtures.js';

const CREDENTIALS = { accessKeyId: 'AKIDSTART', secretAccessKey: 'start-secret' };

/** A port nothing listens on: every connection to it is refused (Postgres down, transient). */
async function closedPort(): Promise<number> {
  const server = createTcpServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test('a missing queue ends the start while Postgres is still awaited, and the wait for Postgres stops with it', async (t) => {
  // SQS says the queue does not exist, but only after 2 s, when the wait for Postgres is in a backoff.
  let answer: NodeJS.Timeout | undefined;
  const sqs: Server = createServer((_req, res) => {
    answer = setTimeout(() => {
      res.writeHead(400, { 'content-type': 'application/x-amz-json-1.0' }).end(JSON.stringify({ __type: 'com.amazonaws.sqs#QueueDoesNotExist', message: 'The specified queue does not exist.' }));
    }, 2_000);
  });
  await new Promise<void>((resolve) => sqs.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    clearTimeout(answer);
    sqs.closeAllConnections();
    sqs.close();
  });
  const endpoint = `http://127.0.0.1:${(sqs.address() as AddressInfo).port}`;
  // Full jitter pinned at its top: the backoffs are their caps (200, 400, 800, 1600 ms, ...), so at
  // 2 s the wait for Postgres is in a sleep that ends at 3 s.
  t.mock.method(Math, 'random', () => 0.999_999);

  const config = {
    ...defaultRunConfig({
      sqs: { queueUrl: `${endpoint}/000000000000/missing`, region: 'us-east-1', endpoint },
      databaseUrl: `postgres://postgres:x@127.0.0.1:${await closedPort()}/none`,
      piiKey: new PiiKey(Buffer.alloc(32, 7)),
    }),
    logLevel: 'silent' as const,
    http: undefined,
  };
  await assert.rejects(runPipeline(config, { log: silentLog, stop: new AbortController().signal, credentials: CREDENTIALS }), /QueueDoesNotExist/);
  sqs.closeAllConnections();
  // Nothing of the start is left waiting: no backoff timer keeps the process alive.
  assert.deepEqual(
    process.getActiveResourcesInfo().filter((resource) => resource === 'Timeout'),
    [],
    'a timer is still pending after the start failed',
  );
});
