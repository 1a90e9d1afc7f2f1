// The stale-result guard. Python numbers every request (`request_seq`) and says which one the output traits
// hold (`result_seq`). A view draws a result only when it is newer than what it already drew, so a late,
// older result never replaces a newer one; while `result_seq < request_seq` the view is marked stale.

export class SeqGuard {
  constructor() {
    /** the result_seq last drawn; -Infinity before the first draw */
    this.drawn = -Infinity;
  }

  /** A new result event: draw it only if strictly newer than the drawn one. @param {number} seq */
  isNewer(seq) {
    return Number.isFinite(seq) && seq > this.drawn;
  }

  /** An update of the result already drawn (or a newer one), e.g. a trait Python refreshed on its own. */
  isCurrent(/** @type {number} */ seq) {
    return Number.isFinite(seq) && seq >= this.drawn;
  }

  /** @param {number} seq */
  mark(seq) {
    if (Number.isFinite(seq) && seq > this.drawn) this.drawn = seq;
  }
}

/**
 * True when Python has accepted a request that has not finished yet. A request that failed is finished too
 * (`status.done_seq`): its error shows in the status line and the last good result is not greyed out for good.
 * @param {{get(name: string): any}} model
 */
export function isStale(model) {
  const req = Number(model.get("request_seq") ?? 0);
  const res = Number(model.get("result_seq") ?? 0);
  const done = Number((model.get("status") || {}).done_seq ?? 0);
  return Math.max(res, Number.isFinite(done) ? done : 0) < req;
}
