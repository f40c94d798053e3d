/**
 * The verdict of a chaos soak: what was sent against what the database, the queue and the
 * dead-letter queue hold at the end. Pure, so that every kind of violation can be shown to be
 * caught (bench/chaos.test.ts) without breaking the pipeline to get it.
 */

/** One message the producer sent, as SQS acknowledged it. */
export interface SentMessage {
  readonly messageId: string;
  /** The user_id of a valid login event, unique to it; undefined for a message meant to be rejected. */
  readonly userId: string | undefined;
}

/** The end state, as read after the drain. */
export interface EndState {
  /** user_id -> rows of it in user_logins. */
  readonly rows: ReadonlyMap<string, number>;
  /** message_id -> its rejected_messages row. */
  readonly rejections: ReadonlyMap<string, { readonly claimed: boolean; readonly forwarded: boolean; readonly forwardError: string | null }>;
  /** login_etl_message_id attribute -> letters of it in the dead-letter queue. */
  readonly deadLetters: ReadonlyMap<string, number>;
  /** Visible, in-flight and delayed messages left in the source queue. */
  readonly queueDepth: number;
}

export interface Verdict {
  readonly sent: number;
  readonly sentValid: number;
  readonly sentInvalid: number;
  /** Valid events with exactly one row. */
  readonly committed: number;
  /** Invalid messages with exactly one rejection. */
  readonly rejected: number;
  /** Sent messages with neither a row nor a rejection. */
  readonly lost: number;
  /** Valid events with more than one row. */
  readonly duplicated: number;
  /** Valid events that ended as rejections, invalid ones that ended as rows. */
  readonly misplaced: number;
  /** Rows and rejections of messages nobody sent. */
  readonly unknown: number;
  /** Rejections forwarded to the dead-letter queue more than once. */
  readonly forwardedTwice: number;
  /**
   * Rejections marked forwarded that are not in the dead-letter queue, or never claimed for
   * forwarding (so never sent) without being marked unforwardable.
   */
  readonly notForwarded: number;
  /**
   * Rejections claimed for forwarding whose send was never confirmed (the process stopped between
   * the claim and the record): at most once, so not sent again. Not a violation; counted.
   */
  readonly unconfirmed: number;
  readonly queueDepth: number;
  /** One line per kind of violation, with up to 5 example ids; empty when the state is exact. */
  readonly violations: readonly string[];
  /** Every id of every kind of violation. */
  readonly details: Readonly<Record<string, readonly string[]>>;
}

export function verdict(sent: readonly SentMessage[], end: EndState): Verdict {
  const examples = new Map<string, string[]>();
  const note = (kind: string, id: string) => {
    const list = examples.get(kind) ?? [];
    list.push(id);
    examples.set(kind, list);
  };
  let committed = 0;
  let rejected = 0;
  let lost = 0;
  let duplicated = 0;
  let misplaced = 0;
  let forwardedTwice = 0;
  let unconfirmed = 0;
  let notForwarded = 0;
  const sentIds = new Set<string>();
  const sentUsers = new Set<string>();
  for (const message of sent) {
    sentIds.add(message.messageId);
    const rejection = end.rejections.get(message.messageId);
    if (message.userId !== undefined) {
      sentUsers.add(message.userId);
      const rows = end.rows.get(message.userId) ?? 0;
      if (rows === 1 && rejection === undefined) committed += 1;
      if (rows > 1) {
        duplicated += 1;
        note('duplicated', message.messageId);
      }
      if (rejection !== undefined) {
        misplaced += 1;
        note('valid event rejected', message.messageId);
      } else if (rows === 0) {
        lost += 1;
        note('lost', message.messageId);
      }
    } else if (rejection === undefined) {
      lost += 1;
      note('lost', message.messageId);
    } else {
      rejected += 1;
    }
    if (rejection !== undefined) {
      const letters = end.deadLetters.get(message.messageId) ?? 0;
      if (letters > 1) {
        forwardedTwice += 1;
        note('forwarded more than once', message.messageId);
      }
      if (rejection.forwarded && letters === 0) {
        notForwarded += 1;
        note('rejection marked forwarded, not in the dead-letter queue', message.messageId);
      } else if (!rejection.forwarded && rejection.forwardError === null) {
        if (rejection.claimed) {
          unconfirmed += 1;
        } else {
          notForwarded += 1;
          note(letters === 0 ? 'rejection never forwarded' : 'rejection forwarded, never claimed', message.messageId);
        }
      }
    }
  }
  let unknown = 0;
  for (const userId of end.rows.keys()) {
    if (!sentUsers.has(userId)) {
      unknown += 1;
      note('row of an event nobody sent', userId);
    }
  }
  for (const id of end.rejections.keys()) {
    if (!sentIds.has(id)) {
      unknown += 1;
      note('rejection of a message nobody sent', id);
    }
  }
  for (const id of end.deadLetters.keys()) {
    if (!end.rejections.has(id)) {
      unknown += 1;
      note('dead letter without a rejection', id);
    }
  }
  const violations = [...examples].map(([kind, ids]) => `${kind}: ${ids.length} (${ids.slice(0, 5).join(', ')}${ids.length > 5 ? ', ...' : ''})`);
  if (end.queueDepth !== 0) violations.push(`queue not empty: ${end.queueDepth} messages left`);
  const sentValid = sent.filter((m) => m.userId !== undefined).length;
  return {
    sent: sent.length,
    sentValid,
    sentInvalid: sent.length - sentValid,
    committed,
    rejected,
    lost,
    duplicated,
    misplaced,
    unknown,
    forwardedTwice,
    unconfirmed,
    notForwarded,
    queueDepth: end.queueDepth,
    violations,
    details: Object.fromEntries(examples),
  };
}
