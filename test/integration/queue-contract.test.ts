/**
 * The Queue contract: what the pipeline relies on from a queue, checked for every client `run`
 * can use (`--sqs-client lean` and `sdk`, both built by createQueue as `run` builds them) against
 * two independent SQS implementations from the npm registry: fauxqs (the bundled emulator) and
 * local-aws-sqs. Faults (throttling, 5xx, an expired token) come from a proxy in front of each;
 * deadlines from a server that accepts connections and never answers.
 */
import { CreateQueueCommand, SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { createSqsServer } from 'local-aws-sqs';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startLocalSqs } from '../../src/embedded/sqs.js';
import { SourceError } from '../../src/errors.js';
import { classify } from '../../src/failure.js';
import type { MessageRef, Queue } from '../../src/source/queue.js';
import { createQueue, type QueueClients } from '../../src/source/clients.js';
import { startSilentServer, startSqsFaultProxy, type SqsFaultProxy } from '../helpers/sqs-fault-proxy.js';

const CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' };
const CLIENTS = ['lean', 'sdk'] as const;
type ClientName = (typeof CLIENTS)[number];

interface Implementation {
  readonly name: string;
  readonly endpoint: string;
  /**
   * Whether it refuses a malformed receipt handle in DeleteMessageBatch, as SQS does
   * (ReceiptHandleIsInvalid). fauxqs deletes nothing and reports success; there the proxy refuses
   * the entry in SQS's words, and passes the rest on.
   */
  readonly refusesBadDeleteHandles: boolean;
  createQueue(name: string): Promise<string>;
  send(queueUrl: string, bodies: readonly string[]): Promise<string[]>;
  stop(): Promise<void>;
}

/** An SDK client for setting up queues and messages; never the client under test. */
function setupClient(endpoint: string): SQSClient {
  return new SQSClient({ region: 'us-east-1', endpoint, credentials: CREDENTIALS });
}

function implementationOver(name: string, endpoint: string, refusesBadDeleteHandles: boolean, stop: () => Promise<void>): Implementation {
  const client = setupClient(endpoint);
  return {
    name,
    endpoint,
    refusesBadDeleteHandles,
    async createQueue(queueName) {
      const { QueueUrl } = await client.send(new CreateQueueCommand({ QueueName: queueName }));
      assert.ok(QueueUrl, `${name} created no queue`);
      return QueueUrl;
    },
    async send(queueUrl, bodies) {
      const { Successful, Failed } = await client.send(
        new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: bodies.map((body, i) => ({ Id: String(i), MessageBody: body })) }),
      );
      assert.equal(Failed?.length ?? 0, 0, 'test setup: send failed');
      return (Successful ?? []).sort((a, b) => Number(a.Id) - Number(b.Id)).map((s) => s.MessageId ?? '');
    },
    async stop() {
      client.destroy();
      await stop();
    },
  };
}

async function startFauxqs(): Promise<Implementation> {
  const sqs = await startLocalSqs();
  return implementationOver('fauxqs', sqs.endpoint, false, () => sqs.stop());
}

async function startLocalAwsSqs(): Promise<Implementation> {
  const server = await createSqsServer({ port: 0, hostname: '127.0.0.1', emulateQueueCreationLifecycle: false });
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return implementationOver('local-aws-sqs', endpoint, true, async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
}

let counter = 0;
const uniqueName = () => `contract_${process.pid}_${(counter += 1)}`;

/** The queue `run` would build for this client, sending every request through `endpoint`. */
function queueFor(
  client: ClientName,
  queueUrl: string,
  endpoint: string,
  options: { timeoutMs?: number; credentialChain?: () => Promise<{ accessKeyId: string; secretAccessKey: string }> } = {},
): Promise<QueueClients> {
  return createQueue(
    { queueUrl, region: 'us-east-1', endpoint },
    {
      connections: 4,
      client,
      timeoutMs: options.timeoutMs ?? 10_000,
      ...(options.credentialChain === undefined ? { credentials: CREDENTIALS } : { credentialChain: options.credentialChain }),
    },
  );
}

const never = new AbortController().signal;

/** Receives until `count` messages came back (or a few empty receives in a row). */
async function receiveAll(queue: Queue, count: number, visibilityTimeoutSeconds?: number) {
  const messages = [];
  for (let empty = 0; messages.length < count && empty < 3; ) {
    const got = await queue.receive({ maxMessages: 10, waitTimeSeconds: 1, signal: never, visibilityTimeoutSeconds });
    if (got.length === 0) empty += 1;
    messages.push(...got);
  }
  return messages;
}

async function failureOf(call: Promise<unknown>): Promise<SourceError> {
  const err = await call.then(
    () => assert.fail('the call should fail'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof SourceError, `a SourceError, not ${String(err)}`);
  return err;
}

const IMPLEMENTATIONS: readonly [string, () => Promise<Implementation>][] = [
  ['fauxqs', startFauxqs],
  ['local-aws-sqs', startLocalAwsSqs],
];

for (const [implementationName, start] of IMPLEMENTATIONS) {
  describe(`Queue contract on ${implementationName}`, () => {
    let implementation: Implementation;
    let proxy: SqsFaultProxy;

    before(async () => {
      implementation = await start();
      proxy = await startSqsFaultProxy(implementation.endpoint);
    });
    after(async () => {
      await proxy?.close();
      await implementation?.stop();
    });

    for (const client of CLIENTS) {
      describe(`${client} client`, () => {
        /** A fresh queue, and the client under test on it, through the proxy. */
        const setUp = async (options: Parameters<typeof queueFor>[3] = {}) => {
          proxy.fault = () => undefined;
          proxy.refuseReceiptHandles.clear();
          const queueUrl = await implementation.createQueue(uniqueName());
          const clients = await queueFor(client, queueUrl, proxy.endpoint, options);
          return { queueUrl, clients, queue: clients.queue };
        };

        test('receives messages with their id, body, sent time and receive count', async () => {
          const { queueUrl, clients, queue } = await setUp();
          try {
            const before = Date.now();
            const ids = await implementation.send(queueUrl, ['{"user_id":"a"}', '{"user_id":"b"}', 'not json at all']);
            const messages = await receiveAll(queue, 3);
            assert.deepEqual(messages.map((m) => m.messageId).sort(), [...ids].sort());
            assert.deepEqual(messages.map((m) => m.body).sort(), ['not json at all', '{"user_id":"a"}', '{"user_id":"b"}']);
            for (const m of messages) {
              assert.equal(m.receiveCount, 1, 'first delivery');
              assert.ok(m.sentTimestampMs !== undefined && m.sentTimestampMs >= before - 1_000 && m.sentTimestampMs <= Date.now() + 1_000, `SentTimestamp ${m.sentTimestampMs}`);
              assert.ok(m.receiptHandle.length > 0);
            }
            // What the drain relies on: messages held are counted in flight (local-aws-sqs also counts them as visible).
            const depth = await queue.depth();
            assert.deepEqual([depth.inFlight, depth.delayed], [3, 0]);
            assert.equal((await queue.settings()).visibilityTimeoutSeconds, 30);
            assert.deepEqual(await queue.delete(messages), []);
            assert.deepEqual(await queue.depth(), { visible: 0, inFlight: 0, delayed: 0 }, 'nothing left once all are deleted');
          } finally {
            await clients.close();
          }
        });

        test('a long poll returns a message sent while it waits', async () => {
          const { queueUrl, clients, queue } = await setUp();
          try {
            const started = performance.now();
            const polling = queue.receive({ maxMessages: 10, waitTimeSeconds: 3, signal: never });
            await new Promise((resolve) => setTimeout(resolve, 300));
            const [id] = await implementation.send(queueUrl, ['late']);
            const messages = await polling;
            assert.deepEqual(messages.map((m) => m.messageId), [id]);
            assert.ok(performance.now() - started < 3_000 + 2_000, 'within its wait time');
          } finally {
            await clients.close();
          }
        });

        test('a batch delete reports exactly the entries SQS refused, and deletes the rest', async () => {
          const { queueUrl, clients, queue } = await setUp();
          try {
            await implementation.send(queueUrl, ['one', 'two', 'three']);
            const [first, second, third] = await receiveAll(queue, 3);
            assert.ok(first && second && third);
            const bad = 'not-a-receipt-handle';
            if (!implementation.refusesBadDeleteHandles) proxy.refuseReceiptHandles.add(bad);
            const refs: MessageRef[] = [first, { messageId: second.messageId, receiptHandle: bad }, third];
            assert.deepEqual(await queue.delete(refs), [second.messageId]);
            assert.equal((await queue.depth()).inFlight, 1, 'only the refused one is left');
            assert.deepEqual(await queue.delete([second]), []);
            assert.deepEqual(await queue.depth(), { visible: 0, inFlight: 0, delayed: 0 });
          } finally {
            await clients.close();
          }
        });

        test('a visibility change to 0 hands a message back at once; a longer one keeps it hidden', async () => {
          const { queueUrl, clients, queue } = await setUp();
          try {
            await implementation.send(queueUrl, ['back', 'kept']);
            const received = await receiveAll(queue, 2, 60);
            const back = received.find((m) => m.body === 'back');
            const kept = received.find((m) => m.body === 'kept');
            assert.ok(back && kept);
            assert.deepEqual(await queue.changeVisibility([back], 0), []);
            assert.deepEqual(await queue.changeVisibility([kept], 120), []);
            const again = await receiveAll(queue, 1);
            assert.deepEqual(again.map((m) => m.messageId), [back.messageId], 'only the one handed back');
            // SQS says 2; local-aws-sqs counts the visibility change as a receive too.
            assert.ok((again[0]?.receiveCount ?? 0) >= 2, `received again: receive count ${again[0]?.receiveCount}`);
            assert.deepEqual(
              await queue.changeVisibility([{ messageId: 'gone', receiptHandle: 'not-a-receipt-handle' }], 0),
              ['gone'],
              'a refused entry is reported by id',
            );
          } finally {
            await clients.close();
          }
        });

        test('a missing queue is a broken SQS, not a transient one', async () => {
          const { queueUrl, clients } = await setUp();
          const missing = await queueFor(client, queueUrl.replace(/[^/]+$/, 'no_such_queue_anywhere'), proxy.endpoint);
          try {
            const err = await failureOf(missing.queue.receive({ maxMessages: 10, waitTimeSeconds: 1, signal: never }));
            assert.match(err.type ?? '', /QueueDoesNotExist|NonExistentQueue/);
            assert.deepEqual([classify(err, 'sqs').kind, classify(err, 'sqs').dependency], ['broken', 'sqs']);
            const depthErr = await failureOf(missing.queue.depth());
            assert.equal(classify(depthErr, 'sqs').kind, 'broken');
          } finally {
            await missing.close();
            await clients.close();
          }
        });

        test('throttling and 5xx answers are transient, sent once (the pipeline retries), and the next call goes through', async () => {
          const { queueUrl, clients, queue } = await setUp();
          try {
            await implementation.send(queueUrl, ['x']);
            proxy.fault = (r) => (r.action === 'ReceiveMessage' ? { status: 400, type: 'ThrottlingException', message: 'Rate exceeded' } : undefined);
            proxy.seen.length = 0;
            const throttled = await failureOf(queue.receive({ maxMessages: 10, waitTimeSeconds: 1, signal: never }));
            assert.equal(classify(throttled, 'sqs').kind, 'transient');
            assert.equal(proxy.seen.filter((r) => r.action === 'ReceiveMessage').length, 1, 'one request per call: no retries inside the client');

            proxy.fault = () => undefined;
            const [message] = await receiveAll(queue, 1);
            assert.ok(message);

            proxy.fault = (r) => (r.action === 'DeleteMessageBatch' ? { status: 500, type: 'InternalError', message: 'We encountered an internal error' } : undefined);
            proxy.seen.length = 0;
            const failed = await failureOf(queue.delete([message]));
            assert.equal(failed.status, 500);
            assert.equal(classify(failed, 'sqs').kind, 'transient');
            assert.equal(proxy.seen.length, 1);

            proxy.fault = (r) => (r.action === 'GetQueueAttributes' ? { status: 503, type: 'ServiceUnavailable', message: 'try later' } : undefined);
            assert.equal(classify(await failureOf(queue.depth()), 'sqs').kind, 'transient');

            proxy.fault = () => undefined;
            assert.deepEqual(await queue.delete([message]), []);
            assert.deepEqual(await queue.depth(), { visible: 0, inFlight: 0, delayed: 0 });
          } finally {
            await clients.close();
          }
        });

        test('an expired token is transient, and the next call signs with fresh credentials from the chain', async () => {
          let handedOut = 0;
          // The chain hands out an expired key first, then a fresh one, as after a role's rotation.
          const chain = async () => {
            handedOut += 1;
            return { accessKeyId: handedOut === 1 ? 'EXPIREDKEY' : 'FRESHKEY', secretAccessKey: 'secret' };
          };
          const { queueUrl, clients, queue } = await setUp({ credentialChain: chain });
          try {
            await implementation.send(queueUrl, ['x']);
            proxy.fault = (r) => (r.accessKeyId === 'EXPIREDKEY' ? { status: 400, type: 'ExpiredToken', message: 'The security token included in the request is expired' } : undefined);
            proxy.seen.length = 0;
            const expired = await failureOf(queue.receive({ maxMessages: 10, waitTimeSeconds: 1, signal: never }));
            assert.equal(expired.type, 'ExpiredToken');
            assert.equal(classify(expired, 'sqs').kind, 'transient');
            const [message] = await receiveAll(queue, 1);
            assert.equal(message?.body, 'x');
            assert.deepEqual(
              proxy.seen.map((r) => r.accessKeyId),
              ['EXPIREDKEY', ...proxy.seen.slice(1).map(() => 'FRESHKEY')],
              'after the expired one, every request is signed with the fresh key',
            );
          } finally {
            await clients.close();
          }
        });
      });
    }
  });
}

describe('SQS call deadlines: an endpoint that accepts connections and never answers', () => {
  let silent: Awaited<ReturnType<typeof startSilentServer>>;
  before(async () => {
    silent = await startSilentServer();
  });
  after(async () => {
    await silent?.close();
  });

  for (const client of CLIENTS) {
    test(`${client} client: every call fails within its deadline, transient; the caller's signal still ends a call at once`, { timeout: 60_000 }, async () => {
      const timeoutMs = 400;
      const queueUrl = `${silent.endpoint}/000000000000/silent`;
      const clients = await queueFor(client, queueUrl, silent.endpoint, { timeoutMs });
      const ref = { messageId: 'm', receiptHandle: 'r' };
      const calls: [string, number, () => Promise<unknown>][] = [
        // A receive gets its wait time on top of the timeout.
        ['receive', 1_000 + timeoutMs, () => clients.queue.receive({ maxMessages: 10, waitTimeSeconds: 1, signal: never })],
        ['delete', timeoutMs, () => clients.queue.delete([ref])],
        ['changeVisibility', timeoutMs, () => clients.queue.changeVisibility([ref], 0)],
        ['depth', timeoutMs, () => clients.queue.depth()],
        ['settings', timeoutMs, () => clients.queue.settings()],
      ];
      try {
        for (const [name, deadlineMs, call] of calls) {
          const started = performance.now();
          const err = await failureOf(call());
          const tookMs = performance.now() - started;
          assert.ok(tookMs >= deadlineMs - 50 && tookMs < deadlineMs + 1_500, `${name} ended after ${Math.round(tookMs)} ms; its deadline is ${deadlineMs} ms`);
          assert.match(err.message, new RegExp(`no answer within ${deadlineMs} ms`), name);
          assert.equal(classify(err, 'sqs').kind, 'transient', name);
        }
        const forwarded = await (await clients.deadLetters(queueUrl)).forward([{ messageId: 'm', body: 'b', reason: 'r' }]);
        assert.deepEqual(forwarded.sent, []);
        assert.ok(forwarded.failure instanceof SourceError && /no answer within 400 ms/.test(forwarded.failure.message), String(forwarded.failure));

        const stop = new AbortController();
        const started = performance.now();
        const deleting = clients.queue.delete([ref], stop.signal);
        setTimeout(() => stop.abort(), 50);
        await assert.rejects(deleting, (err: Error) => !(err instanceof SourceError) && err.name === 'AbortError', "the caller's abort is an abort, not a failure");
        assert.ok(performance.now() - started < timeoutMs, 'ended by the signal, before the deadline');
      } finally {
        await clients.close();
      }
    });
  }
});
