import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { QueueDoesNotExist } from '@aws-sdk/client-sqs';
import fc from 'fast-check';
import { classify } from '../../src/failure.js';
import { chunks } from '../../src/source/queue.js';
import { resolveSqsEndpoint } from '../../src/source/aws.js';
import { batchesBySize, sqsError } from '../../src/source/sqs.js';

const AWS_QUEUE = 'https://sqs.us-east-1.amazonaws.com/123456789012/q';

function sdkError(name: string, httpStatusCode?: number): Error {
  const err = new Error(`${name} happened`);
  err.name = name;
  return httpStatusCode === undefined ? err : Object.assign(err, { $metadata: { httpStatusCode } });
}

describe('resolveSqsEndpoint', () => {
  it('always uses an explicit endpoint', () => {
    assert.equal(resolveSqsEndpoint({ queueUrl: AWS_QUEUE, region: 'us-east-1', endpoint: 'http://localhost:4566' }), 'http://localhost:4566');
    assert.equal(
      resolveSqsEndpoint({
        queueUrl: 'http://sqs.us-east-1.localhost:4566/000000000000/q',
        region: 'us-east-1',
        endpoint: 'http://127.0.0.1:4566',
      }),
      'http://127.0.0.1:4566',
    );
  });

  it('uses the origin of a non-AWS queue URL (LocalStack) when no endpoint is set', () => {
    assert.equal(
      resolveSqsEndpoint({ queueUrl: 'http://localhost:4566/000000000000/login-queue', region: 'us-east-1', endpoint: undefined }),
      'http://localhost:4566',
    );
    assert.equal(
      resolveSqsEndpoint({ queueUrl: 'http://sqs.us-east-1.localhost:4566/000000000000/q', region: 'us-east-1', endpoint: undefined }),
      'http://sqs.us-east-1.localhost:4566',
    );
  });

  it('leaves AWS queue URLs to the SDK when no endpoint is set', () => {
    assert.equal(resolveSqsEndpoint({ queueUrl: AWS_QUEUE, region: 'us-east-1', endpoint: undefined }), undefined);
    assert.equal(
      resolveSqsEndpoint({ queueUrl: 'https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q', region: 'cn-north-1', endpoint: undefined }),
      undefined,
    );
  });

  it('does not mistake a look-alike host for AWS', () => {
    assert.equal(
      resolveSqsEndpoint({ queueUrl: 'https://sqs.notamazonaws.com/123456789012/q', region: 'us-east-1', endpoint: undefined }),
      'https://sqs.notamazonaws.com',
    );
  });
});

/** What the failure policy makes of an SDK failure, wrapped as the SDK path wraps it. */
const kindOf = (err: unknown) => classify(sqsError('ReceiveMessage', err), 'sqs').kind;

describe('SDK failures, classified', () => {
  it('server errors and throttling are transient', () => {
    assert.equal(kindOf(sdkError('InternalError', 500)), 'transient');
    assert.equal(kindOf(sdkError('ServiceUnavailable', 503)), 'transient');
    assert.equal(kindOf(sdkError('TooManyRequests', 429)), 'transient');
    assert.equal(kindOf(sdkError('ThrottlingException', 400)), 'transient');
    assert.equal(kindOf(sdkError('RequestThrottled', 403)), 'transient');
  });

  it('failures with no HTTP response (network errors) are transient', () => {
    assert.equal(kindOf(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })), 'transient');
  });

  it('errors the SDK marks $retryable are transient', () => {
    assert.equal(kindOf(Object.assign(sdkError('Whatever', 400), { $retryable: {} })), 'transient');
  });

  it('a missing queue and other client errors are broken', () => {
    assert.equal(kindOf(new QueueDoesNotExist({ message: 'The specified queue does not exist.', $metadata: { httpStatusCode: 400 } })), 'broken');
    assert.equal(kindOf(sdkError('QueueDoesNotExist', 400)), 'broken');
    assert.equal(kindOf(sdkError('AccessDenied', 403)), 'broken');
    assert.equal(kindOf(sdkError('InvalidParameterValue', 400)), 'broken');
  });

  it('missing credentials are broken', () => {
    assert.equal(kindOf(sdkError('CredentialsProviderError')), 'broken');
  });

  it('things that are not errors, unwrapped, are broken', () => {
    assert.equal(classify('boom', 'sqs').kind, 'broken');
    assert.equal(classify(undefined, 'sqs').kind, 'broken');
  });

  it('keeps the status and the error type on the SourceError', () => {
    const err = sqsError('DeleteMessageBatch', sdkError('AccessDenied', 403));
    assert.deepEqual([err.status, err.type, err.message], [403, 'AccessDenied', 'SQS DeleteMessageBatch failed: AccessDenied happened']);
  });
});

describe('batchesBySize', () => {
  const size = (n: number) => n;

  it('splits by count: at most 10 entries a request', () => {
    const { batches, oversized } = batchesBySize(Array.from({ length: 25 }, () => 1), size, 10, 1_048_576);
    assert.deepEqual(batches.map((b) => b.length), [10, 10, 5]);
    assert.deepEqual(oversized, []);
  });

  it('splits by bytes: two 600,000-byte entries go in two requests', () => {
    const { batches } = batchesBySize([600_000, 600_000], size, 10, 1_048_576);
    assert.deepEqual(batches, [[600_000], [600_000]]);
  });

  it('fills a request up to exactly the limit, keeping order', () => {
    const { batches } = batchesBySize([500_000, 548_576, 1, 2], size, 10, 1_048_576);
    assert.deepEqual(batches, [[500_000, 548_576], [1, 2]]);
  });

  it('sets apart an entry larger than any request, never sending it', () => {
    const { batches, oversized } = batchesBySize([5, 1_048_577, 7], size, 10, 1_048_576);
    assert.deepEqual(batches, [[5, 7]]);
    assert.deepEqual(oversized, [1_048_577]);
  });

  it('never makes a request over either limit', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 1_200_000 }), { maxLength: 60 }), (sizes) => {
        const { batches, oversized } = batchesBySize(sizes, size, 10, 1_048_576);
        for (const batch of batches) {
          assert.ok(batch.length >= 1 && batch.length <= 10);
          assert.ok(batch.reduce((a, b) => a + b, 0) <= 1_048_576);
        }
        assert.deepEqual([...batches.flat(), ...oversized].sort((a, b) => a - b), [...sizes].sort((a, b) => a - b));
      }),
    );
  });
});

describe('chunks', () => {
  it('splits into chunks of at most size, keeping order', () => {
    const items = Array.from({ length: 25 }, (_, i) => i);
    assert.deepEqual(chunks(items, 10), [
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
      [10, 11, 12, 13, 14, 15, 16, 17, 18, 19],
      [20, 21, 22, 23, 24],
    ]);
  });

  it('makes full chunks when the length is a multiple of size', () => {
    assert.deepEqual(chunks(['a', 'b', 'c', 'd'], 2), [['a', 'b'], ['c', 'd']]);
  });

  it('returns one chunk for a short list and none for an empty one', () => {
    assert.deepEqual(chunks([1, 2, 3], 10), [[1, 2, 3]]);
    assert.deepEqual(chunks([], 10), []);
  });
});
