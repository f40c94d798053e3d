import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { collectSettings, parseRunConfig, RUN_SETTINGS } from '../../src/config.js';
import { generateKeyText, generateVaultKey, parseKeyRing, parsePiiKey, PiiKey } from '../../src/transform/key.js';
import { configErrorFrom, NON_RANDOM_KEYS } from '../helpers/fixtures.js';

const A = generateKeyText();
const B = generateKeyText();
const BASE_ENV = { SQS_QUEUE_URL: 'http://localhost:4566/000000000000/q', DATABASE_URL: 'postgres://u:p@h/db' };
const runConfig = (env: NodeJS.ProcessEnv, flags: Record<string, string> = {}) =>
  parseRunConfig(collectSettings(RUN_SETTINGS, flags, env), env);
const tempDir = mkdtempSync(join(tmpdir(), 'login-etl-ring-'));
after(() => rmSync(tempDir, { recursive: true, force: true }));

describe('parseKeyRing', () => {
  it('reads JSON and YAML rings with explicit ids and one active key', () => {
    const json = parseKeyRing(JSON.stringify({ keys: [{ id: 'k2', status: 'active', secret: B }, { id: 'k1', status: 'decrypt-only', secret: A }] }), 'PII_KEYS');
    const yaml = parseKeyRing(`keys:\n  - id: k2\n    status: active\n    secret: "${B}"\n  - id: k1\n    status: decrypt-only\n    secret: "${A}"\n`, 'PII_KEYS');
    for (const ring of [json, yaml]) {
      assert.equal(ring.active.id, 'k2');
      assert.equal(ring.get('k1')?.status, 'decrypt-only');
      assert.deepEqual(ring.get('k1')?.derive('x'), parsePiiKey(A, 't').derive('x'));
    }
    assert.equal(JSON.stringify(json), '{"keys":[{"id":"k2","status":"active"},{"id":"k1","status":"decrypt-only"}]}');
  });

  it('refuses rings without exactly one active key, duplicate ids and bad ids, naming the entry', () => {
    const cases: [unknown, RegExp][] = [
      [{ keys: [{ id: 'a', status: 'decrypt-only', secret: A }] }, /^PII_KEYS: must have exactly one active key, has 0$/],
      [{ keys: [{ id: 'a', secret: A }, { id: 'b', secret: B }] }, /exactly one active key, has 2/],
      [{ keys: [{ id: 'a', secret: A }, { id: 'a', status: 'retired', secret: B }] }, /lists the key id 'a' twice/],
      [{ keys: [{ id: 'has:colon', secret: A }] }, /^PII_KEYS keys\[0\]\.id: must be 1 to 16/],
      [{ keys: [{ id: 'a', status: 'sleeping', secret: A }] }, /keys\[0\]\.status: must be one of active, decrypt-only, retired/],
      [{ keys: [{ id: 'a' }] }, /keys\[0\]\.secret: is required/],
      [{ keys: [] }, /non-empty list of keys/],
    ];
    for (const [doc, expected] of cases) assert.match(configErrorFrom(() => parseKeyRing(JSON.stringify(doc), 'PII_KEYS')).message, expected);
    assert.match(configErrorFrom(() => parseKeyRing(`{"keys": [{"id": "a", "secret": "${A}"`, 'PII_KEYS')).message, /^PII_KEYS: is not valid JSON or YAML$/);
  });

  it('refuses weak secrets (short, repeated byte, documented example) without echoing them', () => {
    const weak = [
      ['c2hvcnQta2V5', /keys\[0\]\.secret: decodes to 9 bytes/],
      [Buffer.alloc(32).toString('base64'), /keys\[0\]\.secret: is one byte repeated/],
      [Buffer.alloc(32, 7).toString('hex'), /is one byte repeated/],
      ['HNvoNJuemBgLRJmT6OJmHyavMxwtNoHRFkw8ltvKarE=', /is an example key printed in the documentation/],
    ] as const;
    for (const [secret, expected] of weak) {
      const err = configErrorFrom(() => parseKeyRing(JSON.stringify([{ id: 'a', secret }]), 'PII_KEYS'));
      assert.match(err.message, expected);
      assert.ok(!err.message.includes(secret));
    }
  });

  it('refuses secrets and vault keys that do not look random, naming the entry and the field', () => {
    for (const [label, text, reason] of NON_RANDOM_KEYS) {
      const secret = configErrorFrom(() => parseKeyRing(JSON.stringify([{ id: 'a', secret: text }]), 'PII_KEYS'));
      assert.equal(secret.setting, 'PII_KEYS keys[0].secret', label);
      assert.match(secret.message, reason, label);
    }
    const { holder } = generateVaultKey('v1');
    const pattern = 'deadbeef'.repeat(8);
    for (const field of ['public_key', 'private_key'] as const) {
      const err = configErrorFrom(() => parseKeyRing(JSON.stringify([{ ...holder, [field]: pattern }]), 'PII_KEYS'));
      assert.equal(err.setting, `PII_KEYS keys[0].${field}`);
      assert.match(err.message, /too few distinct byte values/);
      assert.ok(!err.message.includes(pattern.slice(0, 8)));
    }
  });

  it('checks that a vault private key belongs to its public key', () => {
    const one = generateVaultKey('v1');
    const two = generateVaultKey('v1');
    assert.equal(parseKeyRing(JSON.stringify([one.holder]), 'PII_KEYS').active.hasPrivateKey, true);
    const mixed = { ...one.holder, private_key: two.holder.private_key };
    assert.match(configErrorFrom(() => parseKeyRing(JSON.stringify([mixed]), 'PII_KEYS')).message, /private_key: does not belong to the public_key/);
  });
});

describe('run configuration with key rings and modes', () => {
  it('keeps the derived id of a single PII_KEY, so existing tokens keep matching', () => {
    const config = runConfig({ ...BASE_ENV, PII_KEY: A });
    assert.equal(config.piiKey.id, new PiiKey(Buffer.from(A, 'base64')).id);
    assert.equal(config.maskMode, 'hmac');
  });

  it('uses the active key of PII_KEYS and of PII_KEYS_FILE, and warns about a file others can read', () => {
    const ring = JSON.stringify({ keys: [{ id: 'old', status: 'decrypt-only', secret: A }, { id: 'new', secret: B }] });
    assert.equal(runConfig({ ...BASE_ENV, PII_KEYS: ring }).piiKey.id, 'new');
    const file = join(tempDir, 'ring.json');
    writeFileSync(file, ring, { mode: 0o600 });
    const privateFile = runConfig({ ...BASE_ENV, PII_KEYS_FILE: file }, { 'mask-mode': 'siv' });
    assert.equal(privateFile.piiKey.id, 'new');
    assert.deepEqual(privateFile.keyWarnings, []);
    chmodSync(file, 0o644);
    const shared = runConfig({ ...BASE_ENV }, { 'pii-keys-file': file });
    assert.deepEqual(shared.keyWarnings, ['PII_KEYS_FILE (--pii-keys-file): the key file can be read by other users (mode 644); chmod 600 it']);
  });

  it('refuses two key sources, a bad mode, and vault without a public key or with a private key', () => {
    assert.match(configErrorFrom(() => runConfig({ ...BASE_ENV, PII_KEY: A, PII_KEYS: '[]' })).message, /set only one of/);
    assert.equal(configErrorFrom(() => runConfig({ ...BASE_ENV, PII_KEY: A, LOGIN_ETL_MASK_MODE: 'rot13' })).message, 'LOGIN_ETL_MASK_MODE (--mask-mode): must be one of hmac, siv, vault');
    assert.match(configErrorFrom(() => runConfig({ ...BASE_ENV, PII_KEY: A, LOGIN_ETL_MASK_MODE: 'vault' })).message, /^LOGIN_ETL_MASK_MODE \(--mask-mode\): vault needs a key ring/);
    const { pipeline, holder } = generateVaultKey();
    assert.equal(runConfig({ ...BASE_ENV, PII_KEYS: JSON.stringify([pipeline]), LOGIN_ETL_MASK_MODE: 'vault' }).piiKey.id, pipeline.id);
    const err = configErrorFrom(() => runConfig({ ...BASE_ENV, PII_KEYS: JSON.stringify([holder]), LOGIN_ETL_MASK_MODE: 'vault' }));
    assert.match(err.message, /^PII_KEYS: holds a vault private_key/);
    assert.ok(!err.message.includes(holder.private_key as string));
  });
});

describe('a vault private key in the ring of a process that writes', () => {
  for (const mode of ['hmac', 'siv', 'vault'] as const) {
    it(`is refused by run and check in ${mode} mode, from PII_KEYS and from PII_KEYS_FILE, naming the setting`, () => {
      const { holder } = generateVaultKey('v1');
      const inline = configErrorFrom(() => runConfig({ ...BASE_ENV, PII_KEYS: JSON.stringify([holder]), LOGIN_ETL_MASK_MODE: mode }));
      assert.equal(inline.setting, 'PII_KEYS');
      assert.match(inline.message, /^PII_KEYS: holds a vault private_key \(key 'v1'\); .*in every mask mode/);
      assert.ok(!inline.message.includes(holder.private_key as string));
      const file = join(tempDir, `holder-${mode}.json`);
      writeFileSync(file, JSON.stringify({ keys: [holder] }), { mode: 0o600 });
      const fromFile = configErrorFrom(() => runConfig({ ...BASE_ENV }, { 'pii-keys-file': file, 'mask-mode': mode }));
      assert.equal(fromFile.setting, 'PII_KEYS_FILE (--pii-keys-file)');
      assert.match(fromFile.message, /holds a vault private_key/);
    });
  }

  it('is refused when only an earlier, decrypt-only key has it', () => {
    const old = generateVaultKey('old').holder;
    const ring = [{ id: 'new', status: 'active', secret: A }, { ...old, status: 'decrypt-only' }];
    assert.match(configErrorFrom(() => runConfig({ ...BASE_ENV, PII_KEYS: JSON.stringify(ring), LOGIN_ETL_MASK_MODE: 'siv' })).message, /holds a vault private_key \(key 'old'\)/);
  });

  it('is not refused once it is taken out: the same ring with public keys only runs in every mode', () => {
    const { pipeline } = generateVaultKey('v1');
    for (const mode of ['hmac', 'siv', 'vault']) {
      assert.equal(runConfig({ ...BASE_ENV, PII_KEYS: JSON.stringify([pipeline]), LOGIN_ETL_MASK_MODE: mode }).piiKey.id, 'v1');
    }
  });
});

describe('generateVaultKey', () => {
  it('gives the pipeline the public half only, and the holder both', () => {
    const { pipeline, holder } = generateVaultKey();
    assert.deepEqual(Object.keys(pipeline).sort(), ['id', 'public_key', 'secret', 'status']);
    assert.equal(holder.private_key?.length, 44);
    assert.equal(pipeline.id, new PiiKey(Buffer.from(pipeline.secret as string, 'base64')).id);
    assert.notEqual(generateVaultKey().pipeline.secret, pipeline.secret);
  });
});
