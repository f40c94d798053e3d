/**
 * Readiness: whether the dependencies the pipeline needs answered the last time they were used.
 * The pipeline reports every success and failure; the HTTP server reads the state.
 */
export type Dependency = 'postgres' | 'sqs';

export class Health {
  readonly #up: Record<Dependency, boolean> = { postgres: true, sqs: true };
  readonly #lastError: Partial<Record<Dependency, string>> = {};

  report(dependency: Dependency, ok: boolean, error?: string): void {
    this.#up[dependency] = ok;
    if (ok) delete this.#lastError[dependency];
    else if (error !== undefined) this.#lastError[dependency] = error;
  }

  get ready(): boolean {
    return this.#up.postgres && this.#up.sqs;
  }

  snapshot(): { ready: boolean; postgres: boolean; sqs: boolean; errors: Partial<Record<Dependency, string>> } {
    return { ready: this.ready, ...this.#up, errors: { ...this.#lastError } };
  }
}
