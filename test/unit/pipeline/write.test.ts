/**
 * The writer on the in-memory sink: a batch committed through the shared commit algorithm, held
 * through failures until the hard stop, and poison decided by the receive count alone.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { DependencyState } from '../../../src/failure.js';
import { commitHeld, PoisonJudge, type WriterDeps, type WriteTally } from '../../../src/pipeline/write.js';
import { PiiKey } from '../../../src/transform/key.js';
import { HmacMasker } from '../../../src/transform/mask.js';
import { transform } from '../../../src/transform/transform.js';
import { loginBody, queueMessage, silentLog } from '../../helpers/fixtures.js';
import { MemorySink, pgError } from '../../helpers/memory-sink.js';

const masker = new HmacMasker(new PiiKey(randomBytes(32)));
const RETRY = { retryBaseDelayMs: 5, retryMaxDelayMs: 10 };

function setUp(sink: MemorySink) {
  const context = { log: silentLog, clock: () => performance.now() };
  const states = {
    postgres: new DependencyState('postgres', context),
    sqs: new DependencyState('sqs', context),
    'dead-letter-queue': new DependencyState('dead-letter-queue', context),
  };
  const tally: WriteTally = { written: 0, rejected: 0, duplicates: 0, writeFailures: 0, deadLettered: 0, unforwardable: 0, unconfirmed: 0 };
  const poison = new PoisonJudge(3, { poisoned: 0 });
  const deps: WriterDeps = { sink, masker, log: silentLog, states, tally, poison };
  return { deps, states, tally, poison };
}

const outcomesOf = (...bodies: string[]) => bodies.map((body) => transform(queueMessage(body), masker));

describe('commitHeld', () => {
  it('commits rows and rejections in one statement and adds them up', async () => {
    const sink = new MemorySink();
    const { deps, tally } = setUp(sink);
    const committed = await commitHeld(deps, outcomesOf(loginBody({ user_id: 'a' }), 'not json'), RETRY, new AbortController().signal);
    assert.equal(committed, true);
    assert.deepEqual(sink.rows, ['a']);
    assert.deepEqual([tally.written, tally.rejected, tally.writeFailures], [1, 1, 0]);
  });

  it('holds the batch through a transient failure, retrying until it commits, and remembers the error for poison', async () => {
    const sink = new MemorySink();
    let failures = 2;
    sink.fault = () => {
      if (failures-- > 0) throw pgError('57P01', 'terminating connection due to administrator command');
    };
    const { deps, tally, states } = setUp(sink);
    const outcomes = outcomesOf(loginBody({ user_id: 'b' }));
    const committed = await commitHeld(deps, outcomes, RETRY, new AbortController().signal);

    assert.equal(committed, true);
    assert.deepEqual(sink.rows, ['b']);
    assert.equal(tally.writeFailures, 2);
    assert.equal(states.postgres.failure, undefined, 'working again after the commit');
    const again = { ...(outcomes[0]?.message ?? queueMessage('')), receiveCount: 4 };
    const poisoned = deps.poison.outcome(again, masker);
    assert.equal(poisoned.kind, 'rejected');
    assert.match(poisoned.kind === 'rejected' ? poisoned.reason : '', /^received 4 times without being committed \(limit 3\); last error: .*terminating connection/);
  });

  it('a broken sink is held, never split, until the hard stop; then it resolves false with nothing committed', async () => {
    const sink = new MemorySink();
    sink.fault = () => {
      throw pgError('42501', 'permission denied for table user_logins');
    };
    const { deps, states } = setUp(sink);
    const hardStop = new AbortController();
    setTimeout(() => hardStop.abort(), 100);
    const committed = await commitHeld(deps, outcomesOf(loginBody(), loginBody()), RETRY, hardStop.signal);

    assert.equal(committed, false);
    assert.equal(states.postgres.failure?.kind, 'broken');
    assert.ok(sink.statements.length >= 3, `${sink.statements.length} attempts`);
    assert.ok(sink.statements.every((s) => s.length === 2), 'never split');
    assert.deepEqual(sink.rows, []);
  });
});

describe('PoisonJudge', () => {
  it('rejects a message received more often than the limit, and transforms the others', () => {
    const tally = { poisoned: 0 };
    const judge = new PoisonJudge(3, tally);
    assert.equal(judge.outcome(queueMessage(loginBody(), { receiveCount: 3 }), masker).kind, 'accepted');
    const poisoned = judge.outcome(queueMessage(loginBody(), { receiveCount: 4 }), masker);
    assert.equal(poisoned.kind, 'rejected');
    assert.equal(poisoned.kind === 'rejected' ? poisoned.reason : '', 'received 4 times without being committed (limit 3)');
    assert.equal(tally.poisoned, 1);
  });
});
