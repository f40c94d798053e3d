import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { SourceError } from '../../src/errors.js';
import { sendLines } from '../../src/send.js';

/** A client whose n-th SendMessageBatch (1-based) fails; the others accept every entry. */
function clientFailingCall(failing: number | undefined): { client: SQSClient; sent: string[] } {
  const sent: string[] = [];
  let calls = 0;
  const client = {
    async send(command: SendMessageBatchCommand) {
      calls += 1;
      const call = calls;
      await new Promise((resolve) => setTimeout(resolve, 5));
      if (call === failing) throw new Error('AccessDenied');
      sent.push(...(command.input.Entries ?? []).map((e) => e.MessageBody ?? ''));
      return { Successful: [], Failed: [] };
    },
  };
  return { client: client as unknown as SQSClient, sent };
}

const lines = Array.from({ length: 95 }, (_, i) => `{"user_id":"u${i}"}`);

describe('sendLines', () => {
  it('sends every line in batches of 10 and counts them', async () => {
    const { client, sent } = clientFailingCall(undefined);
    assert.equal(await sendLines(client, 'http://q', ['', ...lines, '  ']), 95);
    assert.deepEqual(sent.sort(), [...lines].sort());
  });

  for (const failing of [1, 5, 10]) {
    it(`fails when batch ${failing} of 10 fails, whether or not other batches are still in flight`, async () => {
      const { client } = clientFailingCall(failing);
      await assert.rejects(sendLines(client, 'http://q', lines), (err: Error) => err instanceof SourceError && /SendMessageBatch failed: AccessDenied/.test(err.message));
    });
  }

  it('fails when a batch fails while the file is still being read, with nothing else in flight', async () => {
    const { client } = clientFailingCall(1);
    // The first batch is sent at line 11 and has failed by the time line 12 arrives.
    const slow = Readable.from(
      (async function* () {
        for (const [i, line] of lines.slice(0, 15).entries()) {
          if (i === 11) await sleep(50);
          yield `${line}\n`;
        }
      })(),
    );
    await assert.rejects(sendLines(client, 'http://q', slow), /SendMessageBatch failed: AccessDenied/);
  });
});
