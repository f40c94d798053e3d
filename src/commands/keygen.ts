/** `login-etl keygen`: a fresh PII key, written to files that load as they are. */
import { rm } from 'node:fs/promises';
import { ConfigError, UsageError } from '../errors.js';
import { createPrivateFile, lines, type Command } from '../cli/command.js';

export const keygen: Command = {
  summary:
    'Make a fresh PII key: for hmac and siv a random 32-byte secret (base64), printed or written with --out; for vault two key rings, one for the pipeline (public key only) and one for key holders.',
  settings: [],
  extra: {
    mode: { type: 'string', default: 'hmac', description: 'Masking mode the key is for: hmac, siv or vault.' },
    id: { type: 'string', description: 'Key id of a vault key (1 to 16 letters, digits, . _ -). Default: derived from the secret.' },
    out: {
      type: 'string',
      description: 'File to write (mode 0600; never overwritten): the key, for PII_KEY_FILE; for vault, the key holders\' ring (with the private key), for PII_KEYS_FILE of unmask, rejected and rekey.',
    },
    'pipeline-out': {
      type: 'string',
      description: 'vault: file for the pipeline\'s ring (public key only), for PII_KEYS_FILE of run (mode 0600; never overwritten).',
    },
  },
  async action({ flags, io }) {
    const { out } = lines(io);
    const [{ MASK_MODES }, { generateKeyText, generateVaultKey, KEY_ID_PATTERN }] = await Promise.all([import('../transform/mask.js'), import('../transform/key.js')]);
    const mode = flags.mode;
    if (typeof mode !== 'string' || !(MASK_MODES as readonly string[]).includes(mode)) {
      throw new ConfigError('--mode', `must be one of ${MASK_MODES.join(', ')}`);
    }
    const id = flags.id;
    if (id !== undefined && (typeof id !== 'string' || !KEY_ID_PATTERN.test(id))) {
      throw new ConfigError('--id', 'must be 1 to 16 letters, digits, dots, dashes or underscores');
    }
    const target = typeof flags.out === 'string' ? flags.out : undefined;
    const pipelineTarget = typeof flags['pipeline-out'] === 'string' ? flags['pipeline-out'] : undefined;
    if (mode !== 'vault') {
      if (pipelineTarget !== undefined) throw new UsageError('--pipeline-out goes with --mode vault');
      if (target === undefined) {
        out(generateKeyText());
        return 0;
      }
      await writeNew(target, '--out', `${generateKeyText()}\n`);
      out(`wrote a ${mode} key to ${target} (mode 0600): use it as PII_KEY_FILE`);
      return 0;
    }
    if (target === undefined || pipelineTarget === undefined) {
      throw new UsageError('a vault key is two key rings: give --out FILE for the key holders\' ring and --pipeline-out FILE for the pipeline\'s');
    }
    if (target === pipelineTarget) throw new UsageError('--out and --pipeline-out must name two different files');
    const { pipeline, holder } = generateVaultKey(id);
    const ring = (entry: Record<string, string>) => `${JSON.stringify({ keys: [entry] }, null, 2)}\n`;
    // Both files are claimed before either is written, so a refusal leaves neither behind.
    const pipelineFile = await createPrivateFile(pipelineTarget, '--pipeline-out');
    const holderFile = await createPrivateFile(target, '--out').catch(async (e: unknown) => {
      await pipelineFile.close();
      await rm(pipelineTarget, { force: true });
      throw e;
    });
    for (const [file, text] of [[pipelineFile, ring(pipeline)], [holderFile, ring(holder)]] as const) {
      try {
        await file.writeFile(text);
      } finally {
        await file.close();
      }
    }
    out(`wrote the pipeline's ring to ${pipelineTarget}: PII_KEYS_FILE of run (public key only; it cannot unmask)`);
    out(`wrote the key holders' ring to ${target}: PII_KEYS_FILE of unmask, rejected and rekey (holds the private key; keep it apart from the pipeline)`);
    return 0;
  },
};

async function writeNew(path: string, flag: string, text: string): Promise<void> {
  const file = await createPrivateFile(path, flag);
  try {
    await file.writeFile(text);
  } finally {
    await file.close();
  }
}
