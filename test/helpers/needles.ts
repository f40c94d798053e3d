/**
 * Many needles in large haystacks, in one pass: every needle is indexed by a hash of its first
 * PREFIX_BYTES bytes, a haystack is scanned once, and only positions whose prefix hash is indexed
 * are compared in full. Matching is on bytes, with ASCII letters folded to lower case, so
 * `2001:DB8::1` is found as `2001:db8::1` and the other way round.
 *
 * The scan skips ahead as Wu and Manber's multi-pattern search does: the last two bytes of each
 * window say how far the window can move before it could end on a needle's prefix (up to
 * PREFIX_BYTES - 1 bytes at once, in binary data or text that looks nothing like the needles);
 * only a window whose last two bytes end some prefix is hashed and looked up.
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
  /** By the (folded) last two bytes of a window: how far it can move without passing a needle's prefix. */
  #shifts = new Uint8Array(65_536);
  #hashes = new Int32Array(0);
  #heads = new Int32Array(0);
  #next = new Int32Array(0);
  #slotShift = 32;
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
    this.#slotShift = 32 - bits;
    this.#heads = new Int32Array(1 << bits).fill(-1);
    this.#next = new Int32Array(count).fill(-1);
    this.#hashes = new Int32Array(count);
    this.#shifts = new Uint8Array(65_536).fill(PREFIX_BYTES - 1);
    this.#needles.forEach((needle, i) => {
      for (let q = 0; q < PREFIX_BYTES - 1; q += 1) {
        const block = ((needle[q] as number) << 8) | (needle[q + 1] as number);
        this.#shifts[block] = Math.min(this.#shifts[block] as number, PREFIX_BYTES - 2 - q);
      }
      const h = prefixHash(needle);
      const slot = this.#slot(h);
      this.#hashes[i] = h;
      this.#next[i] = this.#heads[slot] ?? -1;
      this.#heads[slot] = i;
    });
    this.#built = true;
  }

  #slot(h: number): number {
    return Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> this.#slotShift;
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
    const slotShift = this.#slotShift;
    const shifts = this.#shifts;
    // `last` is the first of the window's last two bytes: the window is hay[last - (PREFIX_BYTES - 2), last + 2).
    for (let last = PREFIX_BYTES - 2; last + 1 < n; ) {
      const shift = shifts[((FOLD[hay[last] as number] as number) << 8) | (FOLD[hay[last + 1] as number] as number)] as number;
      if (shift > 0) {
        last += shift;
        continue;
      }
      const start = last - (PREFIX_BYTES - 2);
      let h = 0;
      for (let k = 0; k < PREFIX_BYTES; k += 1) h = (Math.imul(h, BASE) + (FOLD[hay[start + k] as number] as number)) | 0;
      const slot = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> slotShift;
      for (let j = heads[slot] as number; j !== -1; j = chain[j] as number) {
        if (hashes[j] === h && this.#matches(hay, start, j)) {
          hits.push({ needle: this.#texts[j] as string, owners: this.#owners[j] as T[], offset: start });
          if (hits.length >= limit) return hits;
        }
      }
      last += 1;
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
