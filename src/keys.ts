/**
 * Reading the PII keys: from exactly one of PII_KEY, PII_KEY_FILE, PII_KEYS and PII_KEYS_FILE,
 * and the checks that the keys suit the mask mode and the process. Knows nothing of flags; the
 * settings (src/config.ts) hand in the file names and the labels to put in errors.
 */
import { readFileSync, statSync } from 'node:fs';
import { ConfigError } from './errors.js';
import { KeyRing, parseKeyRing, parsePiiKey } from './transform/key.js';
import type { MaskMode } from './transform/mask.js';

/** The key files given, and how to name them in errors (`PII_KEY_FILE (--pii-key-file)`). */
export interface KeySources {
  readonly file: string | undefined;
  readonly fileLabel: string;
  readonly ringFile: string | undefined;
  readonly ringFileLabel: string;
}

export interface LoadedKeys {
  readonly ring: KeyRing;
  /** The setting the keys came from, for messages. */
  readonly source: string;
  /** Non-fatal findings, such as a key file other users can read. */
  readonly warnings: readonly string[];
}

function readKeyFile(file: string, label: string, warnings: string[]): string {
  try {
    const { mode } = statSync(file);
    // A secret that other local users can read is not secret; warn rather than refuse, since
    // some secret mounts (Kubernetes, Docker) set their own modes.
    if ((mode & 0o077) !== 0) {
      warnings.push(`${label}: the key file can be read by other users (mode ${(mode & 0o777).toString(8)}); chmod 600 it`);
    }
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as { code?: string }).code ?? 'unreadable';
    throw new ConfigError(label, `cannot read the key file (${code})`);
  }
}

/**
 * Reads the keys from exactly one of PII_KEY, PII_KEY_FILE (one key, its id derived from it, so
 * masked values stay as they were), PII_KEYS or PII_KEYS_FILE (a key ring). Values never appear
 * in an error. Returns undefined when none is set.
 */
export function readKeys(sources: KeySources, env: NodeJS.ProcessEnv): LoadedKeys | undefined {
  const inline = env.PII_KEY === '' ? undefined : env.PII_KEY;
  const inlineRing = env.PII_KEYS === '' ? undefined : env.PII_KEYS;
  const { file, ringFile } = sources;
  const given = [
    inline === undefined ? undefined : 'PII_KEY',
    file === undefined ? undefined : 'PII_KEY_FILE',
    inlineRing === undefined ? undefined : 'PII_KEYS',
    ringFile === undefined ? undefined : 'PII_KEYS_FILE',
  ].filter((n) => n !== undefined);
  if (given.length > 1) {
    throw new ConfigError(given[0] as string, `set only one of PII_KEY, PII_KEY_FILE, PII_KEYS and PII_KEYS_FILE, not ${given.join(' and ')}`);
  }
  const warnings: string[] = [];
  if (file !== undefined) {
    const label = sources.fileLabel;
    const key = parsePiiKey(readKeyFile(file, label, warnings).trim(), label);
    return { ring: new KeyRing([key], label), source: label, warnings };
  }
  if (inline !== undefined) return { ring: new KeyRing([parsePiiKey(inline.trim(), 'PII_KEY')], 'PII_KEY'), source: 'PII_KEY', warnings };
  if (ringFile !== undefined) {
    const label = sources.ringFileLabel;
    return { ring: parseKeyRing(readKeyFile(ringFile, label, warnings), label), source: label, warnings };
  }
  if (inlineRing !== undefined) return { ring: parseKeyRing(inlineRing, 'PII_KEYS'), source: 'PII_KEYS', warnings };
  return undefined;
}

/** Checks that the keys suit the mask mode: vault mode needs the active key's public key. */
export function checkKeysFitMode(keys: LoadedKeys, mode: MaskMode, modeLabel: string): void {
  if (mode !== 'vault') return;
  if (keys.ring.active.publicKey === undefined) {
    throw new ConfigError(modeLabel, `vault needs a key ring (PII_KEYS_FILE or PII_KEYS) whose active key has a public_key; make one with \`login-etl keygen --mode vault\``);
  }
}

/**
 * Checks the keys of a process that writes (`run`, `check`, the Lambda handler): they suit the
 * mode, and the ring holds no vault private key, whatever the mode. A private key opens every
 * original in login_etl.pii_vault and the writer never needs one; in hmac or siv mode it would
 * sit there unused until someone switched the mode to vault. Key holders (`unmask`, `rekey`)
 * do not call this.
 */
export function checkWriterKeys(keys: LoadedKeys, mode: MaskMode, modeLabel: string): void {
  const holder = keys.ring.keys.find((k) => k.hasPrivateKey);
  if (holder !== undefined) {
    throw new ConfigError(
      keys.source,
      `holds a vault private_key (key '${holder.id}'); run, check and the Lambda handler must hold only public keys, in every mask mode (private keys are for unmask and rekey)`,
    );
  }
  checkKeysFitMode(keys, mode, modeLabel);
}

