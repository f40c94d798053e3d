/** The key ring of the key holders' commands (unmask, rejected, rekey); findings go to stderr. */
import { requireKeyRing, type LoadedKeys, type RawSettings } from '../config.js';
import { err } from './command.js';

export function keysFor(raw: RawSettings, env: NodeJS.ProcessEnv): LoadedKeys {
  const keys = requireKeyRing(raw, env);
  for (const warning of keys.warnings) err(`warning: ${warning}`);
  return keys;
}
