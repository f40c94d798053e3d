/**
 * Readiness: whether the dependencies the pipeline needs answered the last time they were used,
 * and whether one of them refuses the work itself. The pipeline and the dependency monitor report;
 * the HTTP server reads the state.
 */
export type Dependency = 'postgres' | 'sqs' | 'dead-letter-queue';

export class Health {
  readonly #up: Record<Dependency, boolean> = { postgres: true, sqs: true, 'dead-letter-queue': true };
  readonly #lastError: Partial<Record<Dependency, string>> = {};
  /** Broken dependencies: they answer a probe but refuse the work, so only the work clears them. */
  readonly #held: Partial<Record<Dependency, string>> = {};

  /** Whether the dependency answered; from the pipeline's calls and the monitor's probes. */
  report(dependency: Dependency, ok: boolean, error?: string): void {
    this.#up[dependency] = ok;
    if (ok) delete this.#lastError[dependency];
    else if (error !== undefined) this.#lastError[dependency] = error;
  }

  /**
   * Marks a dependency broken (`reason`) or no longer broken (undefined). A probe that succeeds
   * does not clear it: `SELECT 1` works when INSERT on user_logins was revoked.
   */
  hold(dependency: Dependency, reason: string | undefined): void {
    if (reason === undefined) delete this.#held[dependency];
    else this.#held[dependency] = reason;
  }

  get ready(): boolean {
    return Object.values(this.#up).every(Boolean) && Object.keys(this.#held).length === 0;
  }

  snapshot(): { ready: boolean; errors: Partial<Record<Dependency, string>> } & Record<Dependency, boolean> {
    const up = { ...this.#up };
    for (const dependency of Object.keys(this.#held) as Dependency[]) up[dependency] = false;
    return { ready: this.ready, ...up, errors: { ...this.#lastError, ...this.#held } };
  }
}
