/**
 * app_version arrives as text ("2.3.0", "0.96", "3.7") but the column is an integer. It is stored
 * as major * 1,000,000 + minor * 1,000 + patch: order-preserving and lossless for every version
 * with up to three numeric parts, minor and patch below 1000, no leading zeros.
 * `login_etl.app_version_text(integer)` in the database turns it back into "major.minor.patch".
 */

const VERSION = /^(0|[1-9]\d{0,3})(?:\.(0|[1-9]\d{0,2}))?(?:\.(0|[1-9]\d{0,2}))?$/;
const INT4_MAX = 2_147_483_647;

export type VersionResult = { kind: 'ok'; value: number } | { kind: 'invalid'; reason: string };

export function encodeAppVersion(text: string): VersionResult {
  const match = VERSION.exec(text);
  if (!match) {
    return {
      kind: 'invalid',
      reason: 'app_version must be up to three dot-separated numbers without leading zeros, minor and patch below 1000',
    };
  }
  const [major, minor, patch] = [match[1], match[2], match[3]].map((part) => Number(part ?? 0)) as [number, number, number];
  const value = major * 1_000_000 + minor * 1_000 + patch;
  if (value > INT4_MAX) return { kind: 'invalid', reason: 'app_version is too large for an integer column' };
  return { kind: 'ok', value };
}

/** The inverse of encodeAppVersion, as "major.minor.patch". */
export function decodeAppVersion(value: number): string {
  return `${Math.floor(value / 1_000_000)}.${Math.floor(value / 1_000) % 1_000}.${value % 1_000}`;
}
