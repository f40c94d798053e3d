/**
 * The chaos soak: its verdict catches every kind of violation, and a 30-second run with a fixed
 * seed injects a fault of each kind, with evidence, and ends exact. Part of `npm test`; the long
 * run is `npm run chaos -- --minutes 10` (docs/reliability.md).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { templateVariable } from '../src/embedded/postgres.js';
import { verdict, type EndState, type SentMessage } from './chaos-check.js';
import { FAULT_KINDS, type ChaosResult } from './chaos.js';

const CHAOS = fileURLToPath(new URL('./chaos.js', import.meta.url));

describe('the chaos verdict', () => {
  const sent: SentMessage[] = [
    { messageId: 'm1', userId: 'u1' },
    { messageId: 'm2', userId: 'u2' },
    { messageId: 'm3', userId: undefined },
    { messageId: 'm4', userId: undefined },
  ];
  const exact = (): EndState => ({
    rows: new Map([['u1', 1], ['u2', 1]]),
    rejections: new Map([
      ['m3', { claimed: true, forwarded: true, forwardError: null }],
      ['m4', { claimed: true, forwarded: false, forwardError: 'InvalidMessageContents' }],
    ]),
    deadLetters: new Map([['m3', 1]]),
    queueDepth: 0,
  });

  test('an exact end state has no violations', () => {
    const v = verdict(sent, exact());
    assert.deepEqual(v.violations, []);
    assert.deepEqual([v.sent, v.sentValid, v.sentInvalid, v.committed, v.rejected, v.lost, v.duplicated], [4, 2, 2, 2, 2, 0, 0]);
  });

  test('a claimed rejection whose send was never confirmed is counted, not a violation, in the dead-letter queue or not', () => {
    for (const letters of [0, 1]) {
      const end = exact();
      const v = verdict(sent, {
        ...end,
        rejections: new Map([...end.rejections, ['m4', { claimed: true, forwarded: false, forwardError: null }]]),
        deadLetters: new Map([['m3', 1], ...(letters === 1 ? [['m4', 1] as [string, number]] : [])]),
      });
      assert.deepEqual(v.violations, [], `with ${letters} letters`);
      assert.equal(v.unconfirmed, 1);
    }
  });

  test('each kind of violation is named with its ids', () => {
    const cases: [string, (end: EndState) => EndState, RegExp][] = [
      ['a valid event without a row', (e) => ({ ...e, rows: new Map([['u1', 1]]) }), /^lost: 1 \(m2\)$/],
      ['a valid event written twice', (e) => ({ ...e, rows: new Map([['u1', 1], ['u2', 2]]) }), /^duplicated: 1 \(m2\)$/],
      ['an invalid message without a rejection', (e) => ({ ...e, rejections: new Map([...e.rejections].filter(([id]) => id !== 'm4')) }), /^lost: 1 \(m4\)$/],
      ['a valid event rejected', (e) => ({ ...e, rows: new Map([['u1', 1]]), rejections: new Map([...e.rejections, ['m2', { claimed: true, forwarded: true, forwardError: null }]]), deadLetters: new Map([['m3', 1], ['m2', 1]]) }), /^valid event rejected: 1 \(m2\)$/],
      ['a row nobody sent', (e) => ({ ...e, rows: new Map([...e.rows, ['u9', 1]]) }), /^row of an event nobody sent: 1 \(u9\)$/],
      ['a letter forwarded twice', (e) => ({ ...e, deadLetters: new Map([['m3', 2]]) }), /^forwarded more than once: 1 \(m3\)$/],
      ['a letter marked forwarded but missing', (e) => ({ ...e, deadLetters: new Map() }), /^rejection marked forwarded, not in the dead-letter queue: 1 \(m3\)$/],
      ['a rejection never claimed, neither forwarded nor unforwardable', (e) => ({ ...e, rejections: new Map([...e.rejections, ['m4', { claimed: false, forwarded: false, forwardError: null }]]) }), /^rejection never forwarded: 1 \(m4\)$/],
      ['a letter of a message never rejected', (e) => ({ ...e, deadLetters: new Map([['m3', 1], ['m1', 1]]) }), /^dead letter without a rejection: 1 \(m1\)$/],
      ['messages left in the queue', (e) => ({ ...e, queueDepth: 3 }), /^queue not empty: 3 messages left$/],
    ];
    for (const [name, tamper, expected] of cases) {
      const v = verdict(sent, tamper(exact()));
      assert.equal(v.violations.length, 1, `${name}: ${JSON.stringify(v.violations)}`);
      assert.match(v.violations[0] ?? '', expected, name);
    }
  });
});

test('npm run chaos -- --minutes 0.5 --seed 11: every kind of fault takes effect, every valid event lands once, every invalid one is rejected once', { timeout: 600_000 }, async () => {
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = execFile(process.execPath, [CHAOS, '--minutes', '0.5', '--seed', '11'], { env: { PATH: process.env.PATH ?? '', ...templateVariable(process.env) }, maxBuffer: 64 * 1024 * 1024 }, (_err, out, err) =>
      resolve({ code: child.exitCode, stdout: out, stderr: err }),
    );
  });
  const last = stdout.trim().split('\n').at(-1) ?? '';
  assert.ok(last.startsWith('{"chaos":'), `no summary line (exit ${code}); stderr: ${stderr.slice(-2_000)}\nstdout: ${stdout.slice(-4_000)}`);
  const result = (JSON.parse(last) as { chaos: ChaosResult }).chaos;
  const report = `\n${stdout.slice(-4_000)}`;

  assert.match(stdout, /^chaos soak: 0\.5 min, seed 11 \(repeat with --seed 11\)$/m);
  for (const kind of FAULT_KINDS) assert.ok(result.faults[kind].effective >= 1, `no ${kind} took effect${report}`);
  assert.ok(result.evidence.permissionDeniedLogged !== undefined && result.evidence.permissionDeniedLogged > 0, report);
  assert.ok(result.evidence.deadLetterRequestsCut !== undefined && result.evidence.deadLetterRequestsCut > 0, report);
  const v = result.verdict;
  assert.ok(v.sentValid > 100 && v.sentInvalid > 10, `too little was sent${report}`);
  assert.deepEqual(
    { lost: v.lost, duplicated: v.duplicated, misplaced: v.misplaced, unknown: v.unknown, notForwarded: v.notForwarded, queueDepth: v.queueDepth },
    { lost: 0, duplicated: 0, misplaced: 0, unknown: 0, notForwarded: 0, queueDepth: 0 },
    report,
  );
  assert.equal(v.committed, v.sentValid, report);
  assert.equal(v.rejected, v.sentInvalid, report);
  assert.equal(result.drained, true, `the drain did not end${report}`);
  assert.deepEqual(result.unclean, [], report);
  // Forwarding is at most once: no tolerance for a letter sent twice.
  assert.deepEqual(v.violations, [], report);
  assert.equal(v.forwardedTwice, 0, report);
  assert.equal(code, 0, report);
});
