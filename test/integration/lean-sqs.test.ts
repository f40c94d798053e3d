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

  it('corrects its clock from the Date header of a skew error and signs again at once, with the server time', async () => {
    const serverAheadMs = 15 * 60_000;
    let answered = 0;
    reply = (request, res) => {
      answered += 1;
      const signedAt = Date.parse(String(request.headers['x-amz-date']).replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'));
      const serverNow = Date.now() + serverAheadMs;
      if (Math.abs(serverNow - signedAt) > 5 * 60_000) {
        res
          .writeHead(400, { date: new Date(serverNow).toUTCString() })
          .end(JSON.stringify({ __type: 'com.amazon.coral.service#InvalidSignatureException', message: 'Signature expired: 20261130T010000Z is now earlier than 20261130T011500Z' }));
        return;
      }
      res.writeHead(200).end('{}');
    };
    const skewed = lean({ endpoint, region: 'us-east-1', credentials: async () => CREDENTIALS, connections: 1 });
    try {
      assert.deepEqual(await skewed.receive({ maxMessages: 10, waitTimeSeconds: 1, signal: new AbortController().signal }), []);
      assert.equal(answered, 2, 'refused once, then accepted with the corrected time');
      assert.ok(Math.abs(skewed.clockOffsetMs - serverAheadMs) < 5_000, `offset ${skewed.clockOffsetMs}`);
      await skewed.delete([{ messageId: 'm', receiptHandle: 'r' }]);
      assert.equal(answered, 3, 'later calls sign with the corrected time straight away');
    } finally {
      await skewed.close();
    }
  });

  it('classifies expired credentials and skew as transient and asks the chain for fresh credentials before the next call', async () => {
    const asked: unknown[] = [];
    const refreshing = lean({
      endpoint,
      region: 'us-east-1',
      credentials: async (properties?: Record<string, unknown>) => {
        asked.push(properties?.forceRefresh === true);
        return CREDENTIALS;
      },
      connections: 1,
    });
    try {
      for (const [status, type, message] of [
        [400, 'ExpiredToken', 'The security token included in the request is expired'],
        [400, 'ExpiredTokenException', 'expired'],
        [400, 'RequestExpired', 'Request has expired'],
        [403, 'RequestTimeTooSkewed', 'The difference between the request time and the server time is too large'],
        [403, 'SignatureDoesNotMatch', 'Signature expired: 20261130T010000Z is now earlier than 20261130T011500Z'],
      ] as const) {
        asked.length = 0;
        reply = (_seen, res) => res.writeHead(status).end(JSON.stringify({ __type: type, message }));
        const err = await refreshing.delete([{ messageId: 'm', receiptHandle: 'r' }]).then(
          () => assert.fail('should fail'),
          (e: unknown) => e,
        );
        assert.ok(err instanceof SourceError);
        assert.equal(classify(err, 'sqs').kind, 'transient', type);
        reply = ok({});
        await refreshing.delete([{ messageId: 'm', receiptHandle: 'r' }]);
        assert.deepEqual(asked, [false, true], `${type}: the next call forces a refresh`);
      }
      reply = (_seen, res) => res.writeHead(403).end(JSON.stringify({ __type: 'SignatureDoesNotMatch', message: 'The request signature we calculated does not match the signature you provided.' }));
      const wrongSecret = await refreshing.depth().then(
        () => assert.fail('should fail'),
        (e: unknown) => e,
      );
      assert.ok(wrongSecret instanceof SourceError);
      assert.equal(classify(wrongSecret, 'sqs').kind, 'broken', 'a signature refused for its secret, not its time');
    } finally {
      await refreshing.close();
    }
  });

  it('reports a failing credential chain or region as a SourceError, classified as the SDK path classifies it', async () => {
    const failing = async (err: Error) => {
      const client = lean({ endpoint, region: 'us-east-1', credentials: () => Promise.reject(err), connections: 1 });
      try {
        const got = await client.delete([{ messageId: 'm', receiptHandle: 'r' }]).then(
          () => assert.fail('should fail'),
          (e: unknown) => e,
        );
        assert.ok(got instanceof SourceError, String(got));
        assert.equal(got.cause, err);
        return classify(got, 'sqs').kind;
      } finally {
        await client.close();
      }
    };
    const missing = Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' });
    assert.equal(await failing(missing), 'broken');
    assert.equal(await failing(new Error('connect ETIMEDOUT 169.254.169.254:80')), 'transient', 'instance metadata that did not answer');
    assert.equal(seen.length, 0, 'nothing was sent unsigned');

    const { ConfigError } = await import('../../src/errors.js');
    const regionless = lean({ endpoint, region: () => Promise.reject(new ConfigError('AWS_REGION (--region)', 'is required')), credentials: async () => CREDENTIALS, connections: 1 });
    try {
      const err = await regionless.depth().then(
        () => assert.fail('should fail'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof SourceError);
      assert.equal(classify(err, 'sqs').kind, 'broken');
    } finally {
      await regionless.close();
    }
  });

  it('an unreadable 2xx answer is a transient SourceError that quotes none of it', async () => {
    const secret = 'user-10.1.2.3-device-abc';
    for (const body of [
      `{"Messages":[{"MessageId":"m","ReceiptHandle":"r","Body":"${secret}"`,
      JSON.stringify({ Messages: secret }),
      JSON.stringify({ Messages: [secret] }),
      JSON.stringify({ Messages: [{ MessageId: 'm', ReceiptHandle: 'r', Body: { text: secret } }] }),
      JSON.stringify([secret]),
      'null',
    ]) {
      reply = (_seen, res) => res.writeHead(200).end(body);
      const err = await receive().then(
        () => assert.fail(`should fail: ${body}`),
        (e: unknown) => e,
      );
      assert.ok(err instanceof SourceError, `${body}: ${String(err)}`);
      assert.equal(err.type, 'MalformedResponse', body);
      assert.equal(classify(err, 'sqs').kind, 'transient');
      assert.ok(!err.message.includes(secret), err.message);
    }
    reply = (_seen, res) => res.writeHead(200).end(JSON.stringify({ Failed: 'nope' }));
    const batch = await calls.delete([{ messageId: 'm', receiptHandle: 'r' }]).then(
      () => assert.fail('should fail'),
      (e: unknown) => e,
    );
    assert.ok(batch instanceof SourceError && batch.type === 'MalformedResponse', String(batch));
  });

  it('cuts off a response longer than its bound, and keeps working', async () => {
    const bounded = lean({ endpoint, region: 'us-east-1', credentials: async () => CREDENTIALS, connections: 1, maxResponseBytes: 4_096 });
    try {
      reply = ok({ Messages: [{ MessageId: 'm', ReceiptHandle: 'r', Body: 'x'.repeat(100_000) }] });
      const err = await bounded.receive({ maxMessages: 10, waitTimeSeconds: 1, signal: new AbortController().signal }).then(
        () => assert.fail('should fail'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof SourceError, String(err));
      assert.equal(err.type, 'ResponseTooLarge');
      reply = ok({ Messages: [{ MessageId: 'm', ReceiptHandle: 'r', Body: 'small' }] });
      const [message] = await bounded.receive({ maxMessages: 10, waitTimeSeconds: 1, signal: new AbortController().signal });
      assert.equal(message?.body, 'small');
    } finally {
      await bounded.close();
    }
  });

  it('a connection cut in the middle of an answer is a transient SourceError, and the next call works', async () => {
    reply = (_seen, res) => {
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.0', 'content-length': '1000' });
      res.write('{"Messages":[');
      setTimeout(() => res.socket?.destroy(), 20);
    };
    const err = await receive().then(
      () => assert.fail('should fail'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof SourceError, String(err));
    assert.equal(classify(err, 'sqs').kind, 'transient');
    reply = ok({ Messages: [{ MessageId: 'm', ReceiptHandle: 'r', Body: 'after' }] });
    const [message] = await receive();
    assert.equal(message?.body, 'after');
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

  it('reaches an endpoint given as an IPv6 address, signing the Host it sends', async () => {
    const hosts: (string | undefined)[] = [];
    const v6 = createServer((req, res) => {
      hosts.push(req.headers.host);
      req.resume();
      req.on('end', () => res.writeHead(200).end(JSON.stringify({ Attributes: { VisibilityTimeout: '7' } })));
    });
    await new Promise<void>((resolve) => v6.listen(0, '::1', resolve));
    const port = (v6.address() as AddressInfo).port;
    const loopback = lean({ endpoint: `http://[::1]:${port}`, region: 'us-east-1', credentials: async () => CREDENTIALS, connections: 1 });
    try {
      assert.equal((await loopback.settings()).visibilityTimeoutSeconds, 7);
      assert.deepEqual(hosts, [`[::1]:${port}`]);
    } finally {
      await loopback.close();
      v6.closeAllConnections();
      await new Promise((resolve) => v6.close(resolve));
    }
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
