/**
 * The commit algorithm, shared by `run`'s pipeline and the Lambda handler: write a batch of
 * outcomes in one statement; when Postgres refuses rows for their content, split the batch in
 * halves until those rows are found and reject exactly them; then forward the committed
 * rejections to the dead-letter queue and record that they were.
 *
 * Forwarding comes after the commit that recorded the rejection, at most once per message id:
 * the write statement reports which rejections still need forwarding (the new ones, and
 * redelivered ones nobody has claimed), the batch claims them in Postgres before it sends them
 * (`claimForwarding`: of two writers holding the same rejection, one wins), and records what
 * became of the send. A process stopped between a claim and the record of its send leaves the
 * claim unconfirmed: the letter may or may not be in the dead-letter queue, and is not sent again
 * (the body stays sealed in rejected_messages; `login-etl rejected replay` can send it).
 *
 * Any other failure (`classify` says transient or broken) ends the attempt with the failure
 * thrown; what is committed or forwarded stays so, and the next attempt goes on from there.
 */
import { randomUUID } from 'node:crypto';
import { DeadLetterError, describeError, UnstorableRejectionError } from './errors.js';
import { classify } from './failure.js';
import type { Logger } from './observability/logger.js';
import type { Sink } from './sink/postgres.js';
import type { DeadLetter, DeadLetterQueue } from './source/queue.js';
import type { Masker } from './transform/mask.js';
import { reject, type Outcome } from './transform/transform.js';

export interface CommitDeps {
  readonly sink: Sink;
  readonly masker: Masker;
  readonly log: Logger;
  readonly deadLetters?: DeadLetterQueue | undefined;
}

/** What a batch's attempts have done so far. */
export interface CommitTally {
  written: number;
  rejected: number;
  duplicates: number;
  /** Rows Postgres refused, rejected with its reason. */
  refused: number;
  deadLettered: number;
  /** Rejections the dead-letter queue refuses for good; recorded in `forward_error`. */
  unforwardable: number;
  /** Rejections whose send got no answer: claimed, maybe forwarded, not sent again. */
  unconfirmed: number;
}

/** One batch on its way into Postgres and the dead-letter queue, across attempts. */
export class BatchCommit {
  readonly tally: CommitTally = { written: 0, rejected: 0, duplicates: 0, refused: 0, deadLettered: 0, unforwardable: 0, unconfirmed: 0 };
  readonly #outcomes: readonly Outcome[];
  readonly #committed = new Set<string>();
  /** Committed rejections still to be forwarded, by message id. */
  readonly #toForward = new Map<string, DeadLetter>();
  /** Of those, the ones this batch has claimed: only these may be sent. */
  readonly #claimed = new Set<string>();
  /** This batch's token on its claims. */
  readonly #claimant = randomUUID();
  /** Forwarded or refused for good, not yet recorded in Postgres. */
  #unrecorded: { forwarded: string[]; refused: { messageId: string; reason: string }[] } = { forwarded: [], refused: [] };

  constructor(
    outcomes: readonly Outcome[],
    private readonly deps: CommitDeps,
  ) {
    this.#outcomes = outcomes;
  }

  /** Outcomes not committed yet. */
  get uncommitted(): Outcome[] {
    return this.#outcomes.filter((o) => !this.#committed.has(o.message.messageId));
  }

  /** Committed rejections still to be forwarded: their messages must not be deleted yet. */
  get unforwarded(): string[] {
    return [...this.#toForward.keys()];
  }

  /**
   * Gives back the claims this batch holds on rejections it has not sent: every letter still to
   * forward is known not to have been sent (one that may have been is dropped from it), so the
   * next delivery of its message forwards it. For a batch given up on (a stop, a failed Lambda
   * invocation); a process killed before this leaves its claims unconfirmed.
   */
  async releaseClaims(): Promise<void> {
    const claimed = this.unforwarded.filter((id) => this.#claimed.has(id));
    if (claimed.length === 0) return;
    await this.deps.sink.releaseForwardingClaims(claimed, this.#claimant);
    for (const id of claimed) this.#claimed.delete(id);
  }

  /** Whether everything is committed, forwarded and recorded. */
  get done(): boolean {
    return this.uncommitted.length === 0 && this.#toForward.size === 0 && this.#unrecorded.forwarded.length + this.#unrecorded.refused.length === 0;
  }

  /** Takes the batch as far as it can go; throws the transient or broken failure that stopped it. */
  async attempt(): Promise<void> {
    await this.#write(this.uncommitted);
    if (this.deps.deadLetters !== undefined) await this.#forward(this.deps.deadLetters);
  }

  async #write(outcomes: readonly Outcome[]): Promise<void> {
    if (outcomes.length === 0) return;
    let result;
    try {
      result = await this.deps.sink.write(outcomes);
    } catch (err) {
      if (classify(err, 'postgres').kind !== 'row-refused') throw err;
      if (outcomes.length > 1) {
        const middle = Math.ceil(outcomes.length / 2);
        await this.#write(outcomes.slice(0, middle));
        await this.#write(outcomes.slice(middle));
        return;
      }
      const only = outcomes[0] as Outcome;
      const reason = err instanceof Error ? err.message : String(err);
      if (only.kind === 'rejected') {
        throw new UnstorableRejectionError(`the rejection of message ${only.message.messageId} cannot be stored: ${reason}`, { cause: err });
      }
      this.deps.log.warn({ messageId: only.message.messageId, err: reason }, 'row refused by Postgres; rejecting it');
      this.tally.refused += 1;
      await this.#write([reject(only.message, reason, this.deps.masker)]);
      return;
    }
    this.tally.written += result.written;
    this.tally.rejected += result.rejected;
    this.tally.duplicates += result.duplicates;
    for (const outcome of outcomes) this.#committed.add(outcome.message.messageId);
    if (this.deps.deadLetters === undefined) return;
    // In the batch's order, whatever order the statement returned them in.
    const reasons = new Map(result.forward.map((f) => [f.messageId, f.reason]));
    for (const { message } of outcomes) {
      const reason = reasons.get(message.messageId);
      if (reason !== undefined) this.#toForward.set(message.messageId, { messageId: message.messageId, body: message.body, reason });
    }
  }

  async #forward(deadLetters: DeadLetterQueue): Promise<void> {
    const { log, sink } = this.deps;
    let failure: unknown;
    const unclaimed = [...this.#toForward.keys()].filter((id) => !this.#claimed.has(id));
    if (unclaimed.length > 0) {
      const claimed = new Set(await sink.claimForwarding(unclaimed, this.#claimant));
      for (const id of unclaimed) {
        if (claimed.has(id)) this.#claimed.add(id);
        // Another writer claimed it: that one sends it.
        else this.#toForward.delete(id);
      }
    }
    if (this.#toForward.size > 0) {
      let result;
      try {
        result = await deadLetters.forward([...this.#toForward.values()]);
      } catch (err) {
        result = { sent: [], refused: [], failure: err };
      }
      for (const messageId of result.sent) this.#toForward.delete(messageId);
      const uncertain = result.uncertain ?? [];
      for (const messageId of uncertain) this.#toForward.delete(messageId);
      if (uncertain.length > 0) {
        this.tally.unconfirmed += uncertain.length;
        log.warn({ messageIds: uncertain, err: describeError(result.failure) }, 'the dead-letter queue may or may not have these letters (no answer); not sent again, at most once');
      }
      for (const refused of result.refused) {
        this.#toForward.delete(refused.messageId);
        log.error({ messageId: refused.messageId, reason: refused.reason }, 'the dead-letter queue refuses this rejected message; recorded, not retried');
      }
      this.tally.deadLettered += result.sent.length;
      this.tally.unforwardable += result.refused.length;
      this.#unrecorded = {
        forwarded: [...this.#unrecorded.forwarded, ...result.sent],
        refused: [...this.#unrecorded.refused, ...result.refused],
      };
      failure = result.failure;
    }
    if (this.#unrecorded.forwarded.length + this.#unrecorded.refused.length > 0) {
      await sink.recordForwarding(this.#unrecorded);
      this.#unrecorded = { forwarded: [], refused: [] };
    }
    if (failure !== undefined) {
      throw new DeadLetterError(`forwarding to the dead-letter queue failed: ${describeError(failure)}`, { cause: failure });
    }
  }
}
