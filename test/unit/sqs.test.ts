import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { QueueDoesNotExist } from '@aws-sdk/client-sqs';
import { chunks, isRetryableSqsError, resolveSqsEndpoint } from '../../src/source/sqs.js';

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

describe('isRetryableSqsError', () => {
  it('retries server errors and throttling', () => {
    assert.equal(isRetryableSqsError(sdkError('InternalError', 500)), true);
    assert.equal(isRetryableSqsError(sdkError('ServiceUnavailable', 503)), true);
    assert.equal(isRetryableSqsError(sdkError('TooManyRequests', 429)), true);
    assert.equal(isRetryableSqsError(sdkError('ThrottlingException', 400)), true);
    assert.equal(isRetryableSqsError(sdkError('RequestThrottled', 403)), true);
  });

  it('retries failures with no HTTP response (network errors)', () => {
    assert.equal(isRetryableSqsError(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })), true);
  });

  it('retries errors the SDK marks $retryable', () => {
    assert.equal(isRetryableSqsError(Object.assign(sdkError('Whatever', 400), { $retryable: {} })), true);
  });

  it('does not retry a missing queue or other client errors', () => {
    assert.equal(isRetryableSqsError(new QueueDoesNotExist({ message: 'The specified queue does not exist.', $metadata: { httpStatusCode: 400 } })), false);
    assert.equal(isRetryableSqsError(sdkError('QueueDoesNotExist', 400)), false);
    assert.equal(isRetryableSqsError(sdkError('AccessDenied', 403)), false);
    assert.equal(isRetryableSqsError(sdkError('InvalidParameterValue', 400)), false);
  });

  it('does not retry missing credentials', () => {
    assert.equal(isRetryableSqsError(sdkError('CredentialsProviderError')), false);
  });

  it('does not retry things that are not errors', () => {
    assert.equal(isRetryableSqsError('boom'), false);
    assert.equal(isRetryableSqsError(undefined), false);
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
