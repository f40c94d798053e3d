/**
 * Which region requests are signed for, and with which credentials: the rules of
 * sqsRegionProvider and sqsCredentialProvider, and what a server sees in the signature of the
 * SDK client and of the lean client.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import type { SqsConfig } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';
import { chooseSqsRegion, isLocalEndpoint, LOCAL_DUMMY_CREDENTIALS, sdkRegion, sqsCredentialProvider, sqsRegionProvider } from '../../src/source/aws.js';
import { createQueue } from '../../src/source/clients.js';
import { createSqsClient, sqsError } from '../../src/source/sqs.js';
import { classify } from '../../src/failure.js';

const AWS_QUEUE = 'https://sqs.eu-west-1.amazonaws.com/123456789012/login-queue';
const LOCALSTACK_QUEUE = 'http://sqs.eu-central-1.localhost.localstack.cloud:4566/000000000000/login-queue';
const CLASSIC_LOCAL_QUEUE = 'http://localhost:4566/000000000000/login-queue';
const REAL = { accessKeyId: 'AKIAREALEXAMPLE', secretAccessKey: 'real-secret' };

const sqs = (queueUrl: string, region?: string, endpoint?: string): SqsConfig => ({ queueUrl, region, endpoint });

/** Sets (or, with undefined, removes) environment variables; returns what puts them back. */
function setEnv(changes: Record<string, string | undefined>): () => void {
  const before = { ...process.env };
  for (const [name, value] of Object.entries(changes)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  return () => {
    for (const name of Object.keys(process.env)) if (!(name in before)) delete process.env[name];
    Object.assign(process.env, before);
  };
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  assert.fail('no ConfigError');
}

/** What the SDK's chain throws when it finds nothing. */
function noCredentials(): Error {
  const err = new Error('Could not load credentials from any providers');
  err.name = 'CredentialsProviderError';
  return err;
}

describe('isLocalEndpoint', () => {
  for (const endpoint of [
    'http://127.0.0.1:4566',
    'http://127.8.9.10:9324',
    'http://[::1]:4566',
    'http://[::ffff:127.0.0.1]:4566',
    'http://localhost:4566',
    'http://LOCALHOST:4566',
    'http://sqs.us-east-1.localhost:4566',
    'http://localstack:4566',
    'http://localhost.localstack.cloud:4566',
    'https://sqs.eu-west-1.localhost.localstack.cloud:4566',
  ]) {
    it(`${endpoint} is local`, () => assert.equal(isLocalEndpoint(endpoint), true));
  }
  for (const endpoint of [
    'https://sqs.us-east-1.amazonaws.com',
    'http://10.0.0.5:4566',
    'http://0.0.0.0:4566',
    'http://[::2]:4566',
    'http://example.com:4566',
    'http://localstack.example.com:4566',
    'http://localhost.example.com:4566',
    'http://localhost.localstack.cloud.example.com:4566',
    'http://notlocalstack:4566',
  ]) {
    it(`${endpoint} is not local`, () => assert.equal(isLocalEndpoint(endpoint), false));
  }
});

describe('chooseSqsRegion', () => {
  it('takes a region given, over the SDK and the queue URL', () => {
    assert.equal(chooseSqsRegion(sqs(LOCALSTACK_QUEUE, 'ap-south-1'), 'us-west-2'), 'ap-south-1');
    assert.equal(chooseSqsRegion(sqs(CLASSIC_LOCAL_QUEUE, 'ap-south-1'), undefined), 'ap-south-1');
  });

  it("else takes the SDK's region (profile, instance metadata)", () => {
    assert.equal(chooseSqsRegion(sqs(CLASSIC_LOCAL_QUEUE), 'us-west-2'), 'us-west-2');
    assert.equal(chooseSqsRegion(sqs(LOCALSTACK_QUEUE), 'us-west-2'), 'us-west-2');
    assert.equal(chooseSqsRegion(sqs(AWS_QUEUE), 'eu-west-1'), 'eu-west-1');
  });

  it("refuses an SDK region that differs from the one an AWS queue URL names, naming both", () => {
    const err = configError(() => chooseSqsRegion(sqs(AWS_QUEUE), 'us-west-2'));
    assert.equal(err.setting, 'AWS_REGION (--region)');
    assert.match(err.message, /SDK's region \(us-west-2, from the AWS profile or instance metadata\) differs from eu-west-1, where SQS_QUEUE_URL \(--queue-url\) names the queue; set eu-west-1$/);
  });

  it('else takes the region the queue URL names: AWS, legacy AWS and LocalStack hosts', () => {
    assert.equal(chooseSqsRegion(sqs(AWS_QUEUE), undefined), 'eu-west-1');
    assert.equal(chooseSqsRegion(sqs('https://ap-northeast-1.queue.amazonaws.com/123456789012/q'), undefined), 'ap-northeast-1');
    assert.equal(chooseSqsRegion(sqs(LOCALSTACK_QUEUE, undefined, 'http://localhost:4566'), undefined), 'eu-central-1');
    // An endpoint elsewhere does not change where the queue is.
    assert.equal(chooseSqsRegion(sqs(AWS_QUEUE, undefined, 'https://vpce-0abc.sqs.eu-west-1.vpce.amazonaws.com'), undefined), 'eu-west-1');
  });

  it('else us-east-1 when every request goes to a local endpoint, given or taken from the queue URL', () => {
    assert.equal(chooseSqsRegion(sqs(CLASSIC_LOCAL_QUEUE), undefined), 'us-east-1');
    assert.equal(chooseSqsRegion(sqs('http://sqs.us-east-1.localhost:4566/000000000000/q', undefined, 'http://127.0.0.1:4566'), undefined), 'us-east-1');
    assert.equal(chooseSqsRegion(sqs('http://localstack:4566/000000000000/q'), undefined), 'us-east-1');
  });

  it('else refuses, naming the setting: a remote endpoint or an AWS queue URL without a region', () => {
    for (const config of [
      sqs('http://elasticmq.internal:9324/000000000000/q'),
      sqs(CLASSIC_LOCAL_QUEUE, undefined, 'https://sqs.example.net'),
      sqs('https://vpce-0abc.sqs.eu-west-1.vpce.amazonaws.com/123456789012/q'),
    ]) {
      const err = configError(() => chooseSqsRegion(config, undefined));
      assert.match(err.message, /^AWS_REGION \(--region\): is required: the SDK found no region .* and SQS_QUEUE_URL \(--queue-url\) names none$/);
    }
  });
});

describe('sqsRegionProvider', () => {
  it("asks the SDK once, on first use, and never when a region is given", async () => {
    let lookups = 0;
    const lookUp = async () => {
      lookups += 1;
      return 'us-west-2';
    };
    const given = sqsRegionProvider(sqs(AWS_QUEUE, 'eu-west-1'), lookUp);
    assert.equal(await given(), 'eu-west-1');
    assert.equal(lookups, 0);
    const found = sqsRegionProvider(sqs(CLASSIC_LOCAL_QUEUE), lookUp);
    assert.deepEqual(await Promise.all([found(), found(), found()]), ['us-west-2', 'us-west-2', 'us-west-2']);
    assert.equal(lookups, 1);
  });

  it('rejects with the ConfigError, which is never retried', async () => {
    const provider = sqsRegionProvider(sqs(AWS_QUEUE), async () => 'us-west-2');
    await assert.rejects(provider(), (err: unknown) => err instanceof ConfigError && classify(sqsError('ReceiveMessage', err), 'sqs').kind === 'broken');
  });
});

describe("sdkRegion: the SDK's own chain", () => {
  const dir = mkdtempSync(join(tmpdir(), 'login-etl-region-'));
  let restore: () => void = () => undefined;
  before(() => {
    writeFileSync(join(dir, 'credentials'), '');
    restore = setEnv({
      AWS_REGION: undefined,
      AWS_DEFAULT_REGION: undefined,
      AWS_PROFILE: undefined,
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_SHARED_CREDENTIALS_FILE: join(dir, 'credentials'),
    });
  });
  after(() => {
    restore();
    rmSync(dir, { recursive: true, force: true });
  });

  it("finds the profile's region in the AWS config file", async () => {
    writeFileSync(join(dir, 'config'), '[default]\nregion = ap-southeast-2\n\n[profile other]\nregion = sa-east-1\n');
    process.env.AWS_CONFIG_FILE = join(dir, 'config');
    assert.equal(await sdkRegion(), 'ap-southeast-2');
  });

  it("reads a FIPS pseudo-region as the SDK client does: the region it names, which a request is signed for", async () => {
    writeFileSync(join(dir, 'config-fips'), '[default]\nregion = fips-us-gov-west-1\n\n[profile suffix]\nregion = us-east-1-fips\n');
    process.env.AWS_CONFIG_FILE = join(dir, 'config-fips');
    assert.equal(await sdkRegion(), 'us-gov-west-1');
    process.env.AWS_PROFILE = 'suffix';
    try {
      assert.equal(await sdkRegion(), 'us-east-1');
    } finally {
      delete process.env.AWS_PROFILE;
    }
  });

  it('finds nothing when no profile has a region and instance metadata is off', async () => {
    writeFileSync(join(dir, 'config-empty'), '[default]\noutput = json\n');
    process.env.AWS_CONFIG_FILE = join(dir, 'config-empty');
    assert.equal(await sdkRegion(), undefined);
  });
});

describe('sqsCredentialProvider', () => {
  it("uses the SDK chain's credentials whenever it finds some, local endpoint or not", async () => {
    for (const config of [sqs(CLASSIC_LOCAL_QUEUE), sqs(AWS_QUEUE)]) {
      const provider = sqsCredentialProvider(config, { onDummy: () => assert.fail('no dummy credentials'), chain: async () => REAL });
      assert.deepEqual(await provider(), REAL);
    }
  });

  it('signs with test/test for a local endpoint when the chain finds nothing, and says so once', async () => {
    for (const config of [
      sqs(AWS_QUEUE, undefined, 'http://127.0.0.1:4566'),
      sqs(CLASSIC_LOCAL_QUEUE),
      sqs(LOCALSTACK_QUEUE, undefined, 'http://localstack:4566'),
      sqs(LOCALSTACK_QUEUE),
    ]) {
      const told: string[] = [];
      let asked = 0;
      const provider = sqsCredentialProvider(config, {
        onDummy: (endpoint) => told.push(endpoint),
        chain: async () => {
          asked += 1;
          throw noCredentials();
        },
      });
      const got = await Promise.all([provider(), provider()]);
      assert.deepEqual(await provider(), LOCAL_DUMMY_CREDENTIALS);
      assert.deepEqual(got, [LOCAL_DUMMY_CREDENTIALS, LOCAL_DUMMY_CREDENTIALS]);
      assert.deepEqual(LOCAL_DUMMY_CREDENTIALS, { accessKeyId: 'test', secretAccessKey: 'test' });
      assert.equal(told.length, 1, config.queueUrl);
      assert.equal(asked, 2, 'the chain is not asked again once the dummy credentials are in use');
    }
  });

  it('never gives dummy credentials to a real AWS or other remote endpoint: a credentials error that says where the SDK looked', async () => {
    for (const config of [sqs(AWS_QUEUE), sqs(CLASSIC_LOCAL_QUEUE, 'us-east-1', 'https://sqs.eu-west-1.amazonaws.com'), sqs(CLASSIC_LOCAL_QUEUE, 'us-east-1', 'http://10.0.0.5:4566')]) {
      const provider = sqsCredentialProvider(config, { onDummy: () => assert.fail('no dummy credentials'), chain: async () => Promise.reject(noCredentials()) });
      await assert.rejects(provider(), (err: unknown) => {
        assert.ok(err instanceof Error);
        assert.equal(err.name, 'CredentialsProviderError');
        assert.match(err.message, /^no usable AWS credentials \(Could not load credentials from any providers\); the SDK looks in AWS_ACCESS_KEY_ID/);
        assert.equal(classify(sqsError('ReceiveMessage', err), 'sqs').kind, 'broken');
        return true;
      });
    }
  });

  it('passes on failures other than finding no credentials', async () => {
    const broken = new Error('socket hang up');
    const provider = sqsCredentialProvider(sqs(CLASSIC_LOCAL_QUEUE), { onDummy: () => assert.fail('no dummy credentials'), chain: async () => Promise.reject(broken) });
    await assert.rejects(provider(), (err: unknown) => err === broken);
  });
});

describe('what the server sees', () => {
  let server: Server;
  let endpoint: string;
  const seen: IncomingHttpHeaders[] = [];
  before(async () => {
    server = createServer((request, response) => {
      seen.push(request.headers);
      request.resume();
      request.on('end', () => {
        response.writeHead(200, { 'content-type': 'application/x-amz-json-1.0' });
        response.end('{}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => server.close());

  /** Access key id and region of the last request's SigV4 credential scope. */
  const lastScope = () => {
    const match = /Credential=([^/]+)\/\d{8}\/([^/]+)\/sqs\/aws4_request/.exec(String(seen.at(-1)?.authorization));
    return match ? { accessKeyId: match[1], region: match[2] } : undefined;
  };

  it("the SDK client and the lean client sign for the queue URL's region", async () => {
    const config = sqs(AWS_QUEUE, undefined, endpoint);
    const clients = await createQueue(config, { connections: 2, credentials: REAL });
    try {
      await (await clients.sdkClient()).send(new GetQueueAttributesCommand({ QueueUrl: AWS_QUEUE, AttributeNames: ['All'] }));
      assert.deepEqual(lastScope(), { accessKeyId: REAL.accessKeyId, region: 'eu-west-1' });
      await clients.queue.receive({ maxMessages: 10, waitTimeSeconds: 1, signal: AbortSignal.timeout(5_000) });
      assert.equal(seen.at(-1)?.['x-amz-target'], 'AmazonSQS.ReceiveMessage');
      assert.deepEqual(lastScope(), { accessKeyId: REAL.accessKeyId, region: 'eu-west-1' });
    } finally {
      await clients.close();
    }
  });

  it('a region given wins, for both clients', async () => {
    const clients = await createQueue(sqs(CLASSIC_LOCAL_QUEUE, 'ca-central-1', endpoint), { connections: 2, credentials: REAL });
    try {
      await (await clients.sdkClient()).send(new GetQueueAttributesCommand({ QueueUrl: CLASSIC_LOCAL_QUEUE, AttributeNames: ['All'] }));
      assert.equal(lastScope()?.region, 'ca-central-1');
      await clients.queue.depth();
      assert.equal(lastScope()?.region, 'ca-central-1');
      await clients.queue.receive({ maxMessages: 10, waitTimeSeconds: 1, signal: AbortSignal.timeout(5_000) });
      assert.equal(lastScope()?.region, 'ca-central-1');
    } finally {
      await clients.close();
    }
  });

  it('the one line about dummy credentials goes to the log given, at info', async () => {
    const lines: [Record<string, unknown>, string][] = [];
    // Nothing for the SDK's chain to find: no AWS variables, an empty home, no instance metadata.
    const home = mkdtempSync(join(tmpdir(), 'login-etl-home-'));
    const restore = setEnv({
      ...Object.fromEntries(Object.keys(process.env).filter((name) => name.startsWith('AWS_')).map((name) => [name, undefined])),
      HOME: home,
      AWS_EC2_METADATA_DISABLED: 'true',
    });
    const client = createSqsClient(sqs(CLASSIC_LOCAL_QUEUE, undefined, endpoint), { maxSockets: 1, log: { info: (fields, msg) => lines.push([fields, msg]) } });
    try {
      await client.send(new GetQueueAttributesCommand({ QueueUrl: CLASSIC_LOCAL_QUEUE, AttributeNames: ['All'] }));
      await client.send(new GetQueueAttributesCommand({ QueueUrl: CLASSIC_LOCAL_QUEUE, AttributeNames: ['All'] }));
      assert.deepEqual(lastScope(), { accessKeyId: 'test', region: 'us-east-1' });
      assert.deepEqual(lines, [[{ endpoint }, 'no AWS credentials found; signing with the dummy credentials test/test, since the SQS endpoint is local']]);
    } finally {
      client.destroy();
      restore();
      rmSync(home, { recursive: true, force: true });
    }
  });
});
