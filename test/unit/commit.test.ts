/**
 * The commit algorithm run and the Lambda handler share (src/commit.ts), on an in-memory sink:
 * one statement when nothing is refused, a split that rejects exactly the rows Postgres refuses,
 * no split for anything else, progress kept across attempts, and forwarding to the dead-letter
 * queue once per message, after the commit that recorded it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { BatchCommit } from '../../src/commit.js';
import { DeadLetterError, SourceError, UnstorableRejectionError } from '../../src/errors.js';
import { classify } from '../../src/failure.js';
import { PiiKey } from '../../src/transform/key.js';
import { HmacMasker } from '../../src/transform/mask.js';
import { transform, type Outcome } from '../../src/transform/transform.js';
import { FakeDeadLetterQueue } from '../helpers/fake-queue.js';
import { loginBody, queueMessage, silentLog } from '../helpers/fixtures.js';
import { MemorySink, pgError } from '../helpers/memory-sink.js';

const masker = new HmacMasker(new PiiKey(randomBytes(32)));

/** Valid events for users `<prefix>-0` ..., as outcomes. */
function accepted(prefix: string, count: number): Outcome[] {
  return Array.from({ length: count }, (_, i) => transform(queueMessage(loginBody({ user_id: `${prefix}-${i}` })), masker));
}

const invalid = (body = 'not json; ip=198.51.100.7') => transform(queueMessage(body), masker);

const userOf = (o: Outcome) => (o.kind === 'accepted' ? o.row.user_id : undefined);

/** Refuses, with a CHECK violation (23514), any statement holding a row for one of `users`. */
function refusing(sink: MemorySink, users: readonly string[]): void {
  sink.fault = (outcomes) => {
    if (outcomes.some((o) => users.includes(userOf(o) ?? ''))) throw pgError('23514', 'new row for relation "user_logins" violates check constraint "no_bad"');
  };
}

describe('BatchCommit: writing', () => {
  it('commits a batch in one statement', async () => {
    const sink = new MemorySink();
    const outcomes = [...accepted('one', 4), invalid()];
    const commit = new BatchCommit(outcomes, { sink, masker, log: silentLog });

    await commit.attempt();

    assert.equal(sink.statements.length, 1);
    assert.deepEqual(commit.tally, { written: 4, rejected: 1, duplicates: 0, refused: 0, deadLettered: 0, unforwardable: 0, unconfirmed: 0 });
    assert.deepEqual(commit.uncommitted, []);
    assert.equal(commit.done, true);
  });

  it('splits around the rows Postgres refuses for their content and rejects exactly those, with its reason', async () => {
    const sink = new MemorySink();
    const outcomes = accepted('split', 8);
    refusing(sink, ['split-2', 'split-7']);
    const commit = new BatchCommit(outcomes, { sink, masker, log: silentLog });

    await commit.attempt();

    assert.deepEqual([...sink.rows].sort(), ['split-0', 'split-1', 'split-3', 'split-4', 'split-5', 'split-6']);
    const refusedIds = [outcomes[2], outcomes[7]].map((o) => o?.message.messageId);
    assert.deepEqual([...sink.rejections.keys()].sort(), [...refusedIds].sort());
    for (const rejection of sink.rejections.values()) {
      assert.equal(rejection.reason, 'Postgres refused the write: new row for relation "user_logins" violates check constraint "no_bad" (SQLSTATE 23514)');
    }
    assert.deepEqual(commit.tally, { written: 6, rejected: 2, duplicates: 0, refused: 2, deadLettered: 0, unforwardable: 0, unconfirmed: 0 });
    // 8 -> 4 + 4 -> (2 + 2) + (2 + 2) -> ones around each refused row, then its rejection.
    assert.ok(sink.statements.length <= 13, `${sink.statements.length} statements`);
    assert.equal(commit.done, true);
  });

  for (const [code, what] of [
    ['42501', 'permission denied for table user_logins'],
    ['42P01', 'relation "user_logins" does not exist'],
    ['42703', 'column "locale" of relation "user_logins" does not exist'],
    ['25006', 'cannot execute INSERT in a read-only transaction'],
  ] as const) {
    it(`does not split on ${code} (${what}): the failure ends the attempt, nothing is rejected`, async () => {
      const sink = new MemorySink();
      sink.fault = () => {
        throw pgError(code, what);
      };
      const commit = new BatchCommit(accepted('broken', 8), { sink, masker, log: silentLog });

      const err = await commit.attempt().then(
        () => assert.fail('the attempt should fail'),
        (e: unknown) => e,
      );

      assert.equal(classify(err, 'postgres').kind, 'broken');
      assert.equal(sink.statements.length, 1, 'one statement, no split');
      assert.equal(sink.rejections.size, 0);
      assert.equal(commit.uncommitted.length, 8);
    });
  }

  it('does not split on a transient failure, and the next attempt writes only what is not committed yet', async () => {
    const sink = new MemorySink();
    const outcomes = accepted('resume', 4);
    let failNext = false;
    sink.fault = (batch) => {
      if (batch.some((o) => userOf(o) === 'resume-0')) throw pgError('23505', 'duplicate key value violates unique constraint "one_per_user"');
      if (failNext) {
        failNext = false;
        throw pgError('57P01', 'terminating connection due to administrator command');
      }
    };
    const commit = new BatchCommit(outcomes, { sink, masker, log: silentLog });
    // The split commits resume-1 alone, then the connection drops before resume-2 and resume-3.
    const write = sink.write.bind(sink);
    sink.write = async (batch) => {
      const result = await write(batch);
      if (batch.length === 1 && userOf(batch[0] as Outcome) === 'resume-1') failNext = true;
      return result;
    };

    const err = await commit.attempt().then(
      () => assert.fail('the attempt should fail'),
      (e: unknown) => e,
    );
    assert.equal(classify(err, 'postgres').kind, 'transient');
    assert.deepEqual(commit.uncommitted.map(userOf), ['resume-2', 'resume-3']);

    const before = sink.statements.length;
    await commit.attempt();

    assert.deepEqual(sink.statements.slice(before).map((s) => s.map((o) => userOf(o) ?? 'rejection')), [['resume-2', 'resume-3']]);
    assert.deepEqual([...sink.rows].sort(), ['resume-1', 'resume-2', 'resume-3']);
    assert.equal(sink.rejections.size, 1, 'resume-0, refused, is rejected');
    assert.equal(commit.done, true);
  });

  it('a rejection Postgres refuses to store is a broken sink, not a bad row: nothing is left to split', async () => {
    const sink = new MemorySink();
    sink.fault = (batch) => {
      if (batch.some((o) => o.kind === 'rejected')) throw pgError('23514', 'new row for relation "rejected_messages" violates check constraint "short"');
    };
    const bad = invalid();
    const commit = new BatchCommit([...accepted('ok', 3), bad], { sink, masker, log: silentLog });

    const err = await commit.attempt().then(
      () => assert.fail('the attempt should fail'),
      (e: unknown) => e,
    );

    assert.ok(err instanceof UnstorableRejectionError, String(err));
    assert.deepEqual(classify(err, 'postgres'), { kind: 'broken', dependency: 'postgres', reason: err.message });
    assert.deepEqual(commit.uncommitted, [bad]);
    assert.equal(sink.rows.length, 3);
  });
});

describe('BatchCommit: forwarding to the dead-letter queue', () => {
  it('forwards committed rejections once, after the statement that recorded them, and records it', async () => {
    const sink = new MemorySink();
    const deadLetters = new FakeDeadLetterQueue();
    const order: string[] = [];
    const write = sink.write.bind(sink);
    sink.write = async (batch) => (order.push('write'), await write(batch));
    deadLetters.fault = () => void order.push('forward');
    const bad = [invalid('not json 1'), invalid('not json 2')];
    const commit = new BatchCommit([bad[0] as Outcome, ...accepted('fw', 2), bad[1] as Outcome], { sink, masker, log: silentLog, deadLetters });

    await commit.attempt();

    assert.deepEqual(order, ['write', 'forward']);
    assert.deepEqual(
      deadLetters.letters.map((l) => [l.messageId, l.body, l.reason]),
      bad.map((o) => [o.message.messageId, o.message.body, 'body is not valid JSON']),
    );
    assert.deepEqual(sink.records, [{ forwarded: bad.map((o) => o.message.messageId), refused: [] }]);
    assert.equal(commit.tally.deadLettered, 2);
  });

  it('a redelivered rejection already forwarded is not forwarded again; one committed but never forwarded is', async () => {
    const sink = new MemorySink();
    const first = [invalid('first'), invalid('second')];
    // Both committed earlier; only the first was forwarded (a crash came before the second).
    await sink.write(first);
    await sink.recordForwarding({ forwarded: [first[0]?.message.messageId as string], refused: [] });
    const deadLetters = new FakeDeadLetterQueue();
    const commit = new BatchCommit(first, { sink, masker, log: silentLog, deadLetters });

    await commit.attempt();

    assert.deepEqual(commit.tally.duplicates, 2);
    assert.deepEqual(deadLetters.letters.map((l) => l.messageId), [first[1]?.message.messageId]);
  });

  it('a failed forward keeps the commit: the next attempt forwards what was not sent, and writes nothing again', async () => {
    const sink = new MemorySink();
    const deadLetters = new FakeDeadLetterQueue();
    deadLetters.fault = (call) => {
      if (call === 1) throw new SourceError('SQS SendMessageBatch (dead-letter queue) failed: Service Unavailable', { cause: undefined, status: 503 });
    };
    const commit = new BatchCommit([invalid(), ...accepted('held', 2)], { sink, masker, log: silentLog, deadLetters });

    const err = await commit.attempt().then(
      () => assert.fail('the attempt should fail'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof DeadLetterError);
    assert.deepEqual(classify(err, 'postgres').dependency, 'dead-letter-queue');
    assert.equal(classify(err, 'postgres').kind, 'transient');
    assert.deepEqual(commit.uncommitted, [], 'committed before forwarding');
    assert.equal(commit.done, false);

    await commit.attempt();

    assert.equal(sink.statements.length, 1, 'no second write');
    assert.equal(deadLetters.calls.length, 2);
    assert.equal(deadLetters.letters.length, 1);
    assert.equal(commit.done, true);
  });

  it('a letter the queue refuses for good is recorded with why, and not tried again', async () => {
    const sink = new MemorySink();
    const deadLetters = new FakeDeadLetterQueue();
    const bad = [invalid('one'), invalid('two')];
    deadLetters.fault = () => [bad[0]?.message.messageId as string];
    const commit = new BatchCommit(bad, { sink, masker, log: silentLog, deadLetters });

    await commit.attempt();
    await commit.attempt();

    assert.equal(deadLetters.calls.length, 1);
    assert.deepEqual(commit.tally, { written: 0, rejected: 2, duplicates: 0, refused: 0, deadLettered: 1, unforwardable: 1, unconfirmed: 0 });
    const { claimant, ...refused } = sink.rejections.get(bad[0]?.message.messageId as string) ?? {};
    assert.equal(typeof claimant, 'string');
    assert.deepEqual(refused, {
      reason: 'body is not valid JSON',
      claimed: true,
      forwarded: false,
      forwardError: 'InvalidMessageContents: refused by the test',
    });
    assert.equal(sink.rejections.get(bad[1]?.message.messageId as string)?.forwarded, true);
  });

  it('when recording the forwarding fails, the next attempt records it without sending again', async () => {
    const sink = new MemorySink();
    const deadLetters = new FakeDeadLetterQueue();
    let failRecord = true;
    sink.recordFault = () => {
      if (failRecord) {
        failRecord = false;
        throw pgError('08006', 'connection failure');
      }
    };
    const commit = new BatchCommit([invalid()], { sink, masker, log: silentLog, deadLetters });

    await assert.rejects(commit.attempt(), (err: unknown) => classify(err, 'postgres').kind === 'transient');
    await commit.attempt();

    assert.equal(deadLetters.calls.length, 1);
    assert.equal(sink.records.length, 1);
    assert.equal([...sink.rejections.values()][0]?.forwarded, true);
  });

  it('a process stopped between the send and its record: the redelivery is not forwarded again (at most once), the claim stays unconfirmed', async () => {
    const sink = new MemorySink();
    const deadLetters = new FakeDeadLetterQueue();
    sink.recordFault = () => {
      throw pgError('57P01', 'terminating connection due to administrator command');
    };
    const bad = invalid();
    const first = new BatchCommit([bad], { sink, masker, log: silentLog, deadLetters });
    await assert.rejects(first.attempt(), (err: unknown) => classify(err, 'postgres').kind === 'transient');
    // The process ends here; the message comes back to another one, whose records work.
    sink.recordFault = undefined;
    const second = new BatchCommit([bad], { sink, masker, log: silentLog, deadLetters });
    await second.attempt();

    assert.equal(deadLetters.letters.length, 1, 'sent once');
    assert.deepEqual(second.tally, { written: 0, rejected: 0, duplicates: 1, refused: 0, deadLettered: 0, unforwardable: 0, unconfirmed: 0 });
    const stored = sink.rejections.get(bad.message.messageId);
    assert.deepEqual({ claimed: stored?.claimed, forwarded: stored?.forwarded }, { claimed: true, forwarded: false });
  });

  it('two batches holding the same rejection: only the one whose claim took sends it', async () => {
    const sink = new MemorySink();
    const deadLetters = new FakeDeadLetterQueue();
    const bad = invalid();
    const one = new BatchCommit([bad], { sink, masker, log: silentLog });
    await one.attempt(); // committed by a writer without a dead-letter queue at hand
    const [a, b] = [new BatchCommit([bad], { sink, masker, log: silentLog, deadLetters }), new BatchCommit([bad], { sink, masker, log: silentLog, deadLetters })];
    await Promise.all([a.attempt(), b.attempt()]);

    assert.equal(deadLetters.letters.length, 1);
    assert.equal(a.tally.deadLettered + b.tally.deadLettered, 1);
    assert.equal(a.done && b.done, true);
  });

  it('a claim whose answer is lost (Postgres gone after its commit) sends nothing; the next attempt gets its own claim back and sends', async () => {
    const sink = new MemorySink();
    const deadLetters = new FakeDeadLetterQueue();
    let failClaim = true;
    sink.claimFault = () => {
      if (failClaim) {
        failClaim = false;
        throw pgError('08006', 'connection failure');
      }
    };
    const commit = new BatchCommit([invalid()], { sink, masker, log: silentLog, deadLetters });

    await assert.rejects(commit.attempt(), (err: unknown) => classify(err, 'postgres').kind === 'transient');
    assert.equal(deadLetters.calls.length, 0, 'nothing sent without a claim');
    await commit.attempt();
    assert.equal(deadLetters.letters.length, 1);
    assert.equal(commit.done, true);
  });

  it('letters whose send got no answer are not sent again (at most once): counted unconfirmed, the batch goes on', async () => {
    const sink = new MemorySink();
    const bad = [invalid('one'), invalid('two')];
    let calls = 0;
    const deadLetters = {
      forward: async (letters: readonly { messageId: string }[]) => {
        calls += 1;
        return { sent: [], refused: [], uncertain: letters.map((l) => l.messageId), failure: new Error('socket hang up') };
      },
    };
    const commit = new BatchCommit(bad, { sink, masker, log: silentLog, deadLetters });

    await assert.rejects(commit.attempt(), DeadLetterError);
    await commit.attempt();

    assert.equal(calls, 1, 'not sent again');
    assert.equal(commit.tally.unconfirmed, 2);
    assert.equal(commit.done, true);
    for (const o of bad) assert.deepEqual(sink.rejections.get(o.message.messageId)?.claimed, true);
  });
});
