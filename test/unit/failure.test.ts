/**
 * The failure policy (src/failure.ts): what each failure is, and how a dependency's state is
 * logged (once per change) and shown on /readyz (a broken one stays unready whatever a probe says).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { DeadLetterError, SinkError, SourceError, UnstorableRejectionError } from '../../src/errors.js';
import { classify, classifyBatchEntry, DependencyState, mayHaveArrived, type FailureKind } from '../../src/failure.js';
import { Health } from '../../src/observability/health.js';
import { pgError } from '../helpers/memory-sink.js';

describe('classify: Postgres', () => {
  const cases: [code: string, kind: FailureKind, what: string][] = [
    ['08006', 'transient', 'connection failure'],
    ['08001', 'transient', 'unable to connect'],
    ['53300', 'transient', 'too many connections'],
    ['53100', 'transient', 'disk full'],
    ['57P01', 'transient', 'admin shutdown'],
    ['57P03', 'transient', 'cannot connect now'],
    ['40001', 'transient', 'serialization failure'],
    ['40P01', 'transient', 'deadlock'],
    ['55P03', 'transient', 'lock not available'],
    ['23505', 'row-refused', 'unique violation'],
    ['23514', 'row-refused', 'check violation'],
    ['23502', 'row-refused', 'not null violation'],
    ['22001', 'row-refused', 'value too long'],
    ['22P02', 'row-refused', 'invalid text representation'],
    ['42501', 'broken', 'insufficient privilege'],
    ['42P01', 'broken', 'undefined table'],
    ['42703', 'broken', 'undefined column'],
    ['25006', 'broken', 'read-only transaction'],
    ['XX000', 'broken', 'internal error'],
    ['57014', 'transient', 'canceling statement due to statement timeout'],
  ];
  for (const [code, kind, what] of cases) {
    it(`SQLSTATE ${code} (${what}) is ${kind}`, () => {
      assert.deepEqual(classify(pgError(code, what), 'postgres'), {
        kind,
        dependency: 'postgres',
        reason: `Postgres refused the write: ${what} (SQLSTATE ${code})`,
      });
    });
  }

  it('network failures and dropped connections are transient, wrapped or not', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    assert.equal(classify(new SinkError('Postgres refused the write: connect ECONNREFUSED', { cause: refused }), 'postgres').kind, 'transient');
    assert.equal(classify(refused, 'postgres').kind, 'transient');
    assert.equal(classify(new Error('Connection terminated unexpectedly'), 'postgres').kind, 'transient');
    assert.equal(classify(new Error('timeout exceeded when trying to connect'), 'postgres').kind, 'transient');
    // node-postgres's own query deadline, past the server's statement timeout.
    assert.equal(classify(new Error('Query read timeout'), 'postgres').kind, 'transient');
  });

  it('anything not listed is broken', () => {
    assert.equal(classify(new TypeError('unexpected'), 'postgres').kind, 'broken');
    assert.equal(classify(new SinkError('Postgres refused the write: ?', { cause: new Error('?') }), 'postgres').kind, 'broken');
    assert.equal(classify('a string', 'postgres').kind, 'broken');
  });

  it('a rejection that cannot be stored is broken, whatever SQLSTATE refused it', () => {
    const err = new UnstorableRejectionError('the rejection of message m cannot be stored', { cause: pgError('23514', 'check') });
    assert.equal(classify(err, 'postgres').kind, 'broken');
  });
});

describe('classify: SQS and the dead-letter queue', () => {
  it('a SourceError belongs to SQS whatever the caller was doing, unless the caller names a queue', () => {
    const throttled = new SourceError('SQS ReceiveMessage failed: slow down', { cause: undefined, status: 400, type: 'ThrottlingException' });
    assert.deepEqual(classify(throttled, 'postgres'), { kind: 'transient', dependency: 'sqs', reason: 'SQS ReceiveMessage failed: slow down' });
    assert.equal(classify(throttled, 'dead-letter-queue').dependency, 'dead-letter-queue');
  });

  it('status and type decide: no answer, 5xx, 429 and throttling are transient; other answers broken', () => {
    const kind = (status: number | undefined, type?: string) => classify(new SourceError('SQS failed', { cause: undefined, status, type }), 'sqs').kind;
    assert.equal(kind(undefined), 'transient');
    assert.equal(kind(500, 'InternalError'), 'transient');
    assert.equal(kind(502, 'HTTP 502'), 'transient');
    assert.equal(kind(429), 'transient');
    assert.equal(kind(400, 'RequestThrottled'), 'transient');
    assert.equal(kind(400, 'QueueDoesNotExist'), 'broken');
    assert.equal(kind(403, 'AccessDenied'), 'broken');
    assert.equal(kind(400, 'BatchRequestTooLong'), 'broken');
    assert.equal(kind(undefined, 'CredentialsProviderError'), 'broken');
  });

  it('a DeadLetterError is the dead-letter queue failing, as transient or broken as its cause', () => {
    const unavailable = new DeadLetterError('forwarding failed', { cause: new SourceError('x', { cause: undefined, status: 503 }) });
    const denied = new DeadLetterError('forwarding failed', { cause: new SourceError('x', { cause: undefined, status: 403, type: 'AccessDenied' }) });
    assert.deepEqual(classify(unavailable, 'postgres'), { kind: 'transient', dependency: 'dead-letter-queue', reason: 'forwarding failed' });
    assert.equal(classify(denied, 'postgres').kind, 'broken');
  });

  it("a batch entry refused as the sender's fault is refused for good; SQS's own fault is transient", () => {
    assert.equal(classifyBatchEntry({ SenderFault: true }), 'row-refused');
    assert.equal(classifyBatchEntry({ SenderFault: false }), 'transient');
    assert.equal(classifyBatchEntry({}), 'transient');
  });
});

describe('DependencyState', () => {
  function setup() {
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const health = new Health();
    let now = 1_000;
    const state = new DependencyState('postgres', { log, health, clock: () => now });
    return { lines, health, state, tick: (ms: number) => (now += ms) };
  }
  const broken = classify(pgError('42501', 'permission denied for table user_logins'), 'postgres');
  const transient = classify(pgError('08006', 'connection failure'), 'postgres');

  it('logs a failure once when it starts and once when it changes, not once per attempt', () => {
    const { lines, state, tick } = setup();
    for (let i = 0; i < 50; i += 1) {
      state.failed(broken, 'batch held');
      tick(100);
    }
    state.failed(transient, 'batch write failed');
    state.failed(transient, 'batch write failed');
    state.succeeded();
    state.succeeded();

    const above = lines.filter((l) => (l.level as number) > 20);
    assert.deepEqual(
      above.map((l) => [l.level, l.msg, l.kind]),
      [
        [50, 'batch held', 'broken'],
        [40, 'batch write failed', 'transient'],
        [30, 'Postgres works again', 'transient'],
      ],
    );
    assert.equal(above[2]?.failedForMs, 5_000);
  });

  it('says how long the dependency has been failing, from its first failure to a success', () => {
    const { state, tick } = setup();
    assert.equal(state.failingForMs(), 0);
    state.failed(transient, 'x');
    tick(700);
    state.failed(broken, 'x');
    tick(300);
    assert.equal(state.failingForMs(), 1_000);
    state.succeeded();
    assert.equal(state.failingForMs(), 0);
    assert.equal(state.failure, undefined);
  });

  it('a broken dependency keeps /readyz unready, with why, even when a probe succeeds; a success clears it', () => {
    const { health, state } = setup();
    state.failed(broken, 'batch held');
    health.report('postgres', true); // SELECT 1 works with INSERT revoked

    assert.equal(health.ready, false);
    assert.equal(health.snapshot().postgres, false);
    assert.match(health.snapshot().errors.postgres ?? '', /^broken: .*permission denied for table user_logins \(SQLSTATE 42501\)$/);

    state.succeeded();
    assert.equal(health.ready, true);
    assert.deepEqual(health.snapshot().errors, {});
  });

  it('a transient failure makes /readyz unready until the dependency answers again', () => {
    const { health, state } = setup();
    state.failed(transient, 'batch write failed');
    assert.equal(health.ready, false);
    assert.match(health.snapshot().errors.postgres ?? '', /^transient: /);
    health.report('postgres', true);
    assert.equal(health.ready, true);
  });
});

describe('mayHaveArrived: whether a failed send may still have been carried out', () => {
  const withCode = (code: string) => Object.assign(new Error(code), { code });
  it('no: the connection was never made', () => {
    for (const code of ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']) {
      assert.equal(mayHaveArrived(new SourceError('SQS SendMessageBatch failed', { cause: withCode(code) })), false, code);
    }
  });
  it('no: SQS answered with a client error, or there were no credentials or no TLS', () => {
    assert.equal(mayHaveArrived(Object.assign(new Error('ThrottlingException'), { $metadata: { httpStatusCode: 400 } })), false);
    assert.equal(mayHaveArrived(new SourceError('SQS SendMessageBatch failed: AccessDenied', { cause: undefined, status: 403 })), false);
    assert.equal(mayHaveArrived(new SourceError('could not load credentials', { cause: Object.assign(new Error('no credentials'), { name: 'CredentialsProviderError' }) })), false);
    assert.equal(mayHaveArrived(new SourceError('certificate', { cause: withCode('CERT_HAS_EXPIRED') })), false);
  });
  it('yes: a server error (it may come after the message was queued)', () => {
    assert.equal(mayHaveArrived(new SourceError('SQS SendMessageBatch failed: HTTP 503', { cause: undefined, status: 503 })), true);
    assert.equal(mayHaveArrived(Object.assign(new Error('InternalError'), { $metadata: { httpStatusCode: 500 } })), true);
  });
  it('yes: the connection was cut, the deadline passed, or a success could not be read', () => {
    assert.equal(mayHaveArrived(new SourceError('socket hang up', { cause: withCode('ECONNRESET') })), true);
    assert.equal(mayHaveArrived(new SourceError('no answer within 10000 ms', { cause: new Error('aborted'), type: 'TimeoutError' })), true);
    assert.equal(mayHaveArrived(new SourceError('the response (HTTP 200) could not be read', { cause: undefined, status: 200 })), true);
  });
});
