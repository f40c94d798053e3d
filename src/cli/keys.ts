/** The key ring of the key holders' commands (unmask, rejected, rekey); findings go to `err`, the command's stderr. */
import { requireKeyRing, type LoadedKeys, type RawSettings } from '../config.js';
import type { Lines } from './command.js';

export function keysFor(raw: RawSettings, env: NodeJS.ProcessEnv, err: Lines['err']): LoadedKeys {
  const keys = requireKeyRing(raw, env);
  for (const warning of keys.warnings) err(`warning: ${warning}`);
  return keys;
}
