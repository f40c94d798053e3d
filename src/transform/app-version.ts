/**
 * app_version arrives as text ("2.3.0", "0.96", "3.7") but the column is an integer. It is stored
 * as major * 1,000,000 + minor * 1,000 + patch: order-preserving and lossless for every version
 * with up to three numeric parts and minor and patch below 1000. Parts are numbers, so leading
 * zeros do not count: "6.02" is version 6.2.0 and "2.00" is 2.0.0, while "2.20" is 2.20.0.
 * `login_etl.app_version_text(integer)` in the database turns it back into "major.minor.patch".
 */

const VERSION = /^(\d{1,10})(?:\.(\d{1,10}))?(?:\.(\d{1,10}))?$/;
const INT4_MAX = 2_147_483_647;

export type VersionResult = { kind: 'ok'; value: number } | { kind: 'invalid'; reason: string };

export function encodeAppVersion(text: string): VersionResult {
  const match = VERSION.exec(text);
  if (!match) {
    return {
      kind: 'invalid',
      reason: 'app_version must be up to three dot-separated numbers, such as 2.3.0 or 0.96',
    };
  }
  const [major, minor, patch] = [match[1], match[2], match[3]].map((part) => Number(part ?? 0)) as [number, number, number];
  if (minor > 999 || patch > 999) return { kind: 'invalid', reason: 'app_version minor and patch must be below 1000' };
  const value = major * 1_000_000 + minor * 1_000 + patch;
  if (value > INT4_MAX) return { kind: 'invalid', reason: 'app_version is too large for an integer column' };
  return { kind: 'ok', value };
}

/** The inverse of encodeAppVersion, as "major.minor.patch". */
export function decodeAppVersion(value: number): string {
  return `${Math.floor(value / 1_000_000)}.${Math.floor(value / 1_000) % 1_000}.${value % 1_000}`;
}
