/** `1 message`, `2 messages`: a count and its noun, for output that people read. */
export function plural(count: number, word: string): string {
  return `${count} ${count === 1 ? word : `${word}s`}`;
}
