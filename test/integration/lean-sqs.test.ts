/**
 * The lean SQS path against a scripted HTTP server: what it sends (signed JSON-protocol POSTs,
 * receive signatures reused only within their second), how it reads SQS's errors, and that an
 * abort ends a long poll at once.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { SourceError } from '../../src/errors.js';
import { classify } from '../../src/failure.js';
import { LeanSqsQueue, type LeanSqsOptions } from '../../src/source/lean-sqs.js';

const CREDENTIALS = { accessKeyId: 'AKIDLEANTEST', secretAccessKey: 'lean-secret' };
const QUEUE_URL = 'http://sqs.us-east-1.localhost/000000000000/lean';

/** A lean client for QUEUE_URL with the default deadlines, unless told otherwise. */
const lean = (options: Omit<LeanSqsOptions, 'queueUrl' | 'deadlines'> & Partial<Pick<LeanSqsOptions, 'deadlines'>>) =>
  new LeanSqsQueue({ queueUrl: QUEUE_URL, deadlines: { timeoutMs: 10_000 }, ...options });

interface Seen {
  readonly target: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

type Reply = (seen: Seen, res: ServerResponse) => void;

const ok = (payload: unknown): Reply => (_seen, res) => {
  res.writeHead(200, { 'content-type': 'application/x-amz-json-1.0' }).end(JSON.stringify(payload));
};

describe('lean SQS calls', () => {
  let server: Server;
  let endpoint: string;
  let calls: LeanSqsQueue;
  const seen: Seen[] = [];
  let reply: Reply = ok({});

  before(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        const entry = { target: String(req.headers['x-amz-target']), headers: req.headers, body };
        seen.push(entry);
        reply(entry, res);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    calls = lean({ endpoint, region: 'us-east-1', credentials: async () => CREDENTIALS, connections: 4 });
  });

  after(async () => {
    await calls.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  beforeEach(() => {
    seen.length = 0;
    reply = ok({});
  });

  const receive = (signal = new AbortController().signal) =>
    calls.receive({ maxMessages: 10, waitTimeSeconds: 20, signal });

  it('receives in the JSON protocol and turns messages into queue messages', async () => {
    reply = ok({
      Messages: [
        { MessageId: 'm-1', ReceiptHandle: 'r-1', Body: '{"user_id":"a"}', Attributes: { SentTimestamp: '1700000000000', ApproximateReceiveCount: '3' } },
        { ReceiptHandle: 'no-id', Body: 'dropped: no MessageId' },
      ],
    });
    const messages = await receive();
    assert.deepEqual(messages, [{ messageId: 'm-1', receiptHandle: 'r-1', body: '{"user_id":"a"}', sentTimestampMs: 1700000000000, receiveCount: 3 }]);
    const [request] = seen;
    assert.equal(request?.target, 'AmazonSQS.ReceiveMessage');
    assert.equal(request?.headers['content-type'], 'application/x-amz-json-1.0');
    assert.deepEqual(JSON.parse(request?.body ?? ''), {
      QueueUrl: QUEUE_URL,
      MaxNumberOfMessages: 10,
      WaitTimeSeconds: 20,
      MessageSystemAttributeNames: ['SentTimestamp', 'ApproximateReceiveCount'],
      AttributeNames: ['SentTimestamp', 'ApproximateReceiveCount'],
    });
  });

  it('signs each request with SigV4 as the SDK signer would, reusing a receive signature only within its second', async () => {
    const signer = new SignatureV4({ service: 'sqs', region: 'us-east-1', credentials: CREDENTIALS, sha256: Hash.bind(null, 'sha256'), applyChecksum: false });
    const url = new URL(endpoint);
    // What the AWS SDK's own signer makes of the same request with the headers it says it signed.
    const expected = async (seenRequest: Seen) => {
      const date = String(seenRequest.headers['x-amz-date']);
      const signingDate = new Date(`${date.slice(0, 4)}-${date.slice(4, 6)}-${date.slice(6, 8)}T${date.slice(9, 11)}:${date.slice(11, 13)}:${date.slice(13, 15)}Z`);
      const signedNames = /SignedHeaders=([^,]+)/.exec(String(seenRequest.headers.authorization))?.[1]?.split(';') ?? [];
      assert.ok(['content-type', 'host', 'x-amz-date', 'x-amz-target'].every((h) => signedNames.includes(h)), signedNames.join(';'));
      const headers = Object.fromEntries(signedNames.map((name) => [name, String(seenRequest.headers[name])]));
      const signed = await signer.sign(
        { method: 'POST', protocol: url.protocol, hostname: url.hostname, port: Number(url.port), path: '/', query: {}, headers, body: seenRequest.body },
        { signingDate },
      );
      return signed.headers.authorization;
    };

    // Three receives in a row: within one second they share a signature; a new second signs anew.
    for (;;) {
      seen.length = 0;
      const startSecond = Math.floor(Date.now() / 1000);
      await receive();
      await receive();
      if (Math.floor(Date.now() / 1000) === startSecond) break;
    }
    await new Promise((resolve) => setTimeout(resolve, 1_000 - (Date.now() % 1000) + 5));
    await receive();
    await calls.delete([{ messageId: 'm-1', receiptHandle: 'r-1' }]);
    await calls.delete([{ messageId: 'm-2', receiptHandle: 'r-2' }]);

    const [first, second, third, del1, del2] = seen;
    assert.ok(first && second && third && del1 && del2);
    for (const request of seen) {
      assert.match(String(request.headers.authorization), /^AWS4-HMAC-SHA256 Credential=AKIDLEANTEST\/\d{8}\/us-east-1\/sqs\/aws4_request, /);
      assert.equal(request.headers.authorization, await expected(request), `${request.target} carries a valid signature`);
    }
    assert.equal(second.headers.authorization, first.headers.authorization, 'the same receive in the same second: the same signature');
    assert.notEqual(third.headers['x-amz-date'], first.headers['x-amz-date']);
    assert.notEqual(third.headers.authorization, first.headers.authorization, 'a new second: signed again');
    assert.notEqual(del1.headers.authorization, del2.headers.authorization, 'different bodies: different signatures');
  });

  it('sends a session token with temporary credentials, and signs it', async () => {
    const temporary = { ...CREDENTIALS, sessionToken: 'session-token-value' };
    const withToken = lean({ endpoint, region: 'eu-west-1', credentials: async () => temporary, connections: 1 });
    try {
      await withToken.delete([{ messageId: 'm', receiptHandle: 'r' }]);
    } finally {
      await withToken.close();
    }
    const [request] = seen;
    assert.equal(request?.headers['x-amz-security-token'], 'session-token-value');
    const authorization = String(request?.headers.authorization);
    assert.match(authorization, /Credential=AKIDLEANTEST\/\d{8}\/eu-west-1\/sqs\/aws4_request/);
    assert.ok(/SignedHeaders=[^,]*x-amz-security-token/.test(authorization), authorization);
  });

  it('deletes and changes visibility in batches of 10 and reports the ids SQS refused', async () => {
    reply = (request, res) => {
      const { Entries } = JSON.parse(request.body) as { Entries: { Id: string }[] };
      const failed = request.target.endsWith('DeleteMessageBatch') ? Entries.filter((e) => e.Id === '3') : [];
      res.writeHead(200).end(JSON.stringify({ Failed: failed.map((e) => ({ Id: e.Id, Code: 'ReceiptHandleIsInvalid', SenderFault: true })) }));
    };
    const refs = Array.from({ length: 23 }, (_, i) => ({ messageId: `m-${i}`, receiptHandle: `r-${i}` }));
    const refused = await calls.delete(refs);
    assert.deepEqual(refused.sort(), ['m-13', 'm-3'], 'the Id of a refused entry maps back to the message of its own chunk');
    const deletes = seen.filter((s) => s.target === 'AmazonSQS.DeleteMessageBatch').map((s) => JSON.parse(s.body) as { Entries: { ReceiptHandle: string }[] });
    assert.deepEqual(deletes.map((d) => d.Entries.length).sort((a, b) => a - b), [3, 10, 10]);
    assert.deepEqual(deletes.flatMap((d) => d.Entries.map((e) => e.ReceiptHandle)).sort(), refs.map((r) => r.receiptHandle).sort());

    seen.length = 0;
    assert.deepEqual(await calls.changeVisibility(refs.slice(0, 2), 0), []);
    const [change] = seen;
    assert.equal(change?.target, 'AmazonSQS.ChangeMessageVisibilityBatch');
    assert.deepEqual(JSON.parse(change?.body ?? ''), {
      QueueUrl: QUEUE_URL,
      Entries: [
        { Id: '0', ReceiptHandle: 'r-0', VisibilityTimeout: 0 },
        { Id: '1', ReceiptHandle: 'r-1', VisibilityTimeout: 0 },
      ],
    });
  });

  const failureOf = async (status: number, payload: string): Promise<SourceError> => {
    reply = (_seen, res) => res.writeHead(status).end(payload);
    const err = await receive().then(
      () => assert.fail('the call should fail'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof SourceError, String(err));
    return err;
  };

  it("names SQS's error and tells what a retry can fix", async () => {
    const missing = await failureOf(400, JSON.stringify({ __type: 'com.amazonaws.sqs#QueueDoesNotExist', message: 'The specified queue does not exist.' }));
    assert.equal(missing.message, 'SQS ReceiveMessage failed: QueueDoesNotExist: The specified queue does not exist.');
    assert.equal(classify(missing, 'sqs').kind, 'broken');

    const denied = await failureOf(403, JSON.stringify({ __type: 'com.amazon.coral.service#AccessDeniedException', Message: 'no' }));
    assert.equal(classify(denied, 'sqs').kind, 'broken');

    const throttled = await failureOf(400, JSON.stringify({ __type: 'com.amazonaws.sqs#RequestThrottled', message: 'slow down' }));
    assert.equal(classify(throttled, 'sqs').kind, 'transient');

    const unavailable = await failureOf(503, JSON.stringify({ __type: 'ServiceUnavailable' }));
    assert.equal(classify(unavailable, 'sqs').kind, 'transient');

    const proxyPage = await failureOf(502, '<html>Bad Gateway</html>');
    assert.equal(proxyPage.message, 'SQS ReceiveMessage failed: HTTP 502');
    assert.equal(classify(proxyPage, 'sqs').kind, 'transient');
  });

  it('an abort ends a long poll at once', async () => {
    reply = () => undefined; // holds the request, as a 20-second long poll does
    const stop = new AbortController();
    const polling = receive(stop.signal);
    while (seen.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    const startedAt = performance.now();
    stop.abort();
    await assert.rejects(polling, (err: Error) => err.name === 'AbortError');
    assert.ok(performance.now() - startedAt < 1_000);
    await assert.rejects(receive(stop.signal), (err: Error) => err.name === 'AbortError', 'an aborted signal sends nothing');
    assert.equal(seen.length, 1);
  });

  it('a connection that cannot be made is a transient SourceError', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const nowhere = lean({ endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', credentials: async () => CREDENTIALS, connections: 1 });
    try {
      const err = await nowhere.delete([{ messageId: 'm', receiptHandle: 'r' }]).then(
        () => assert.fail('the call should fail'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof SourceError);
      assert.equal(classify(err, 'sqs').kind, 'transient');
      assert.match(err.message, /^SQS DeleteMessageBatch failed: .*ECONNREFUSED/);
    } finally {
      await nowhere.close();
    }
  });
});
