/**
 * Many needles in large haystacks, in one pass: every needle is indexed by a hash of its first
 * PREFIX_BYTES bytes, a haystack is scanned once, and only positions whose prefix hash is indexed
 * are compared in full. Matching is on bytes, with ASCII letters folded to lower case, so
 * `2001:DB8::1` is found as `2001:db8::1` and the other way round.
 *
 * Cost: a couple of table lookups per haystack byte, whatever the number of needles: a table of
 * the needles' first two bytes turns most positions away, the prefix hash most of the rest, and
 * a full comparison happens only where a prefix hash matches.
 */

/** Length of the indexed prefix, and so the shortest needle that can be looked for. */
export const PREFIX_BYTES = 7;

/** ASCII upper case to lower case; every other byte as it is. */
const FOLD = Uint8Array.from({ length: 256 }, (_, b) => (b >= 0x41 && b <= 0x5a ? b + 32 : b));
const BASE = 0x01000193;

function prefixHash(bytes: Uint8Array): number {
  let h = 0;
  for (let i = 0; i < PREFIX_BYTES; i += 1) h = (Math.imul(h, BASE) + (FOLD[bytes[i] ?? 0] ?? 0)) | 0;
  return h;
}

export interface Hit<T> {
  /** The needle as it was given. */
  readonly needle: string;
  readonly owners: readonly T[];
  /** Byte offset in the haystack. */
  readonly offset: number;
}

export class NeedleIndex<T> {
  readonly #needles: Buffer[] = [];
  readonly #texts: string[] = [];
  readonly #owners: T[][] = [];
  readonly #byFolded = new Map<string, number>();
  /** Whether some needle starts with these two (folded) bytes: most positions stop here. */
  #firstTwo = new Uint8Array(65_536);
  #hashes = new Int32Array(0);
  #heads = new Int32Array(0);
  #next = new Int32Array(0);
  #shift = 32;
  #built = false;

  /** Needles must be ASCII and at least PREFIX_BYTES long; the same needle may have several owners. */
  add(needle: string, owner: T): void {
    if (needle.length < PREFIX_BYTES || !/^[\x20-\x7e]+$/.test(needle)) {
      throw new Error(`needle ${JSON.stringify(needle)} is not printable ASCII of at least ${PREFIX_BYTES} characters`);
    }
    const folded = needle.toLowerCase();
    const known = this.#byFolded.get(folded);
    if (known !== undefined) {
      this.#owners[known]?.push(owner);
      return;
    }
    this.#byFolded.set(folded, this.#needles.length);
    this.#needles.push(Buffer.from(folded, 'latin1'));
    this.#texts.push(needle);
    this.#owners.push([owner]);
    this.#built = false;
  }

  get size(): number {
    return this.#needles.length;
  }

  #build(): void {
    const count = this.#needles.length;
    let bits = 16;
    while (1 << bits < count * 4) bits += 1;
    this.#shift = 32 - bits;
    this.#heads = new Int32Array(1 << bits).fill(-1);
    this.#next = new Int32Array(count).fill(-1);
    this.#hashes = new Int32Array(count);
    this.#firstTwo = new Uint8Array(65_536);
    this.#needles.forEach((needle, i) => {
      this.#firstTwo[((needle[0] as number) << 8) | (needle[1] as number)] = 1;
      const h = prefixHash(needle);
      const slot = this.#slot(h);
      this.#hashes[i] = h;
      this.#next[i] = this.#heads[slot] ?? -1;
      this.#heads[slot] = i;
    });
    this.#built = true;
  }

  #slot(h: number): number {
    return Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> this.#shift;
  }

  /** Every occurrence of every needle in `haystack` (text is read as UTF-8), up to `limit` of them. */
  scan(haystack: Buffer | string, limit = 1_000): Hit<T>[] {
    if (!this.#built) this.#build();
    const hay = typeof haystack === 'string' ? Buffer.from(haystack, 'utf8') : haystack;
    const hits: Hit<T>[] = [];
    const n = hay.length;
    if (n < PREFIX_BYTES || this.#needles.length === 0) return hits;
    const heads = this.#heads;
    const chain = this.#next;
    const hashes = this.#hashes;
    const shift = this.#shift;
    const firstTwo = this.#firstTwo;
    let next = FOLD[hay[0] as number] as number;
    for (let start = 0; start + PREFIX_BYTES <= n; start += 1) {
      const first = next;
      next = FOLD[hay[start + 1] as number] as number;
      if (firstTwo[(first << 8) | next] !== 1) continue;
      let h = (Math.imul(first, BASE) + next) | 0;
      for (let k = 2; k < PREFIX_BYTES; k += 1) h = (Math.imul(h, BASE) + (FOLD[hay[start + k] as number] as number)) | 0;
      const slot = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> shift;
      for (let j = heads[slot] as number; j !== -1; j = chain[j] as number) {
        if (hashes[j] === h && this.#matches(hay, start, j)) {
          hits.push({ needle: this.#texts[j] as string, owners: this.#owners[j] as T[], offset: start });
          if (hits.length >= limit) return hits;
        }
      }
    }
    return hits;
  }

  #matches(hay: Buffer, start: number, j: number): boolean {
    const needle = this.#needles[j] as Buffer;
    if (start + needle.length > hay.length) return false;
    for (let k = PREFIX_BYTES; k < needle.length; k += 1) {
      if (FOLD[hay[start + k] as number] !== needle[k]) return false;
    }
    // The prefix matched by hash only: compare it too.
    for (let k = 0; k < PREFIX_BYTES; k += 1) {
      if (FOLD[hay[start + k] as number] !== needle[k]) return false;
    }
    return true;
  }
}

/** Up to `radius` bytes either side of a hit, printable: other bytes as `.`. */
export function excerpt(haystack: Buffer | string, offset: number, length: number, radius = 60): string {
  const hay = typeof haystack === 'string' ? Buffer.from(haystack, 'utf8') : haystack;
  const start = Math.max(0, offset - radius);
  const end = Math.min(hay.length, offset + length + radius);
  const text = hay.subarray(start, end).toString('latin1').replace(/[^\x20-\x7e]/g, '.');
  return `${start > 0 ? '…' : ''}${text}${end < hay.length ? '…' : ''}`;
}
