/**
 * Task outcomes waiting to be reported: counts per (stage, revision), bounded. Mirrors
 * the Python client's `_outcomes.py`, bound for bound.
 *
 * `ConfigWatcher.recordOutcome` adds one task to the entry of the stage at the revision
 * it used; the reporter `drain`s the entries into its next report. Every bound is here,
 * so neither a busy worker nor a long server outage makes it grow:
 *
 * - at most {@link MAX_ENTRIES} distinct (stage, revision) entries wait; a new one beyond
 *   that drops the oldest, and the tasks it counted are added to `dropped`;
 * - at most {@link MAX_CAUSES} distinct failure causes per entry, each at most
 *   {@link MAX_CAUSE_LENGTH} printable characters; any other cause counts as `other`;
 * - durations are counts in the 14 fixed buckets of the contract
 *   ({@link DURATION_BUCKET_BOUNDS_SECONDS}), never a list of samples.
 */

import type { StageType } from "./types.js";

/** Distinct (stage, revision) entries held unsent; the oldest goes first. */
export const MAX_ENTRIES = 64;
/** Entries (revisions) of one stage one report may carry: the server refuses more. */
export const PER_STAGE_IN_A_REPORT = 16;
/** Distinct failure causes per entry (the contract's bound). */
export const MAX_CAUSES = 32;
/** Characters of one cause (the contract's bound). */
export const MAX_CAUSE_LENGTH = 64;
/** Where a cause beyond the bounds, or an empty or unprintable one, is counted. */
export const OTHER_CAUSE = "other";
/** The cause of a failure recorded without one. */
export const UNKNOWN_CAUSE = "unknown";

/**
 * The upper bounds in seconds of `TaskOutcomes.duration_buckets` (the proto's comment;
 * `DURATION_BUCKET_BOUNDS_SECONDS` in the Python contract): bucket i counts durations up
 * to the i-th bound, one bucket more counts the longer ones.
 */
export const DURATION_BUCKET_BOUNDS_SECONDS: readonly number[] = Object.freeze([
  0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500,
]);
/** How many duration buckets a TaskOutcomes carries (14). */
export const DURATION_BUCKETS = DURATION_BUCKET_BOUNDS_SECONDS.length + 1;

/**
 * A cause as it may be reported: printable ASCII, at most 64 characters (longer ones
 * are cut); `unknown` when none was given, `other` when nothing is left.
 */
export function cleanCause(cause: string | undefined): string {
  if (cause === undefined) return UNKNOWN_CAUSE;
  const cleaned = [...String(cause)]
    .filter((c) => c >= " " && c <= "~")
    .join("")
    .trim();
  return cleaned.slice(0, MAX_CAUSE_LENGTH) || OTHER_CAUSE;
}

/** The index of the bucket that counts a task of `seconds` (0..13): the first bound ≥ it. */
export function durationBucket(seconds: number): number {
  const index = DURATION_BUCKET_BOUNDS_SECONDS.findIndex((bound) => seconds <= bound);
  return index === -1 ? DURATION_BUCKET_BOUNDS_SECONDS.length : index;
}

/** The tasks one client ran with one stage at one revision, since the last report. */
export class Outcomes {
  succeeded = 0;
  failed = 0;
  retried = 0;
  readonly failuresByCause = new Map<string, number>();
  /** Empty until a duration is recorded; then {@link DURATION_BUCKETS} counts. */
  durationBuckets: number[] = [];

  constructor(
    readonly stage: StageType,
    readonly revision: number,
  ) {}

  /** How many tasks this entry counts. */
  get tasks(): number {
    return this.succeeded + this.failed + this.retried;
  }

  /** Counts one task. */
  add(ok: boolean, retried: boolean, cause: string | undefined, seconds: number | undefined): void {
    if (retried) {
      this.retried += 1;
    } else if (ok) {
      this.succeeded += 1;
    } else {
      this.failed += 1;
      let name = cleanCause(cause);
      const causes = this.failuresByCause;
      // 31 named causes at most, so "other" always has the 32nd place.
      if (!causes.has(name) && name !== OTHER_CAUSE && causes.size >= MAX_CAUSES - 1) name = OTHER_CAUSE;
      causes.set(name, (causes.get(name) ?? 0) + 1);
    }
    if (seconds !== undefined) {
      if (this.durationBuckets.length === 0) this.durationBuckets = new Array<number>(DURATION_BUCKETS).fill(0);
      this.durationBuckets[durationBucket(seconds)]! += 1;
    }
  }
}

/** How a task went, besides ok or not: see `ConfigWatcher.recordOutcome`. */
export interface OutcomeDetails {
  /** Why it failed (one word, e.g. an error class); default `unknown`. Ignored when ok. */
  readonly cause?: string | undefined;
  /** How long it took, in seconds (≥ 0). */
  readonly durationSeconds?: number | undefined;
  /** It failed and will be retried: counted as retried, not as failed. */
  readonly retried?: boolean | undefined;
  /** The revision the task used; default: the stage's config in use now (0: none). */
  readonly revision?: number | undefined;
}

/** The outcomes recorded and not yet drained into a report. */
export class OutcomeLedger {
  private readonly entries = new Map<string, Outcomes>();
  /** Tasks whose outcomes were discarded unsent (bounds, or a refused report). */
  dropped = 0;

  constructor(private readonly maxEntries: number = MAX_ENTRIES) {}

  /** How many (stage, revision) entries wait. */
  get size(): number {
    return this.entries.size;
  }

  /** Counts one task of `stage` run with its config at `revision`. */
  record(stage: StageType, revision: number, ok: boolean, details: OutcomeDetails = {}): void {
    const seconds = details.durationSeconds;
    if (seconds !== undefined && (typeof seconds !== "number" || Number.isNaN(seconds) || seconds < 0)) {
      throw new RangeError("durationSeconds must be a number >= 0");
    }
    const key = `${stage}:${revision}`;
    let entry = this.entries.get(key);
    if (entry === undefined) {
      if (this.entries.size >= this.maxEntries) {
        const [oldest, gone] = this.entries.entries().next().value as [string, Outcomes];
        this.entries.delete(oldest);
        this.dropped += gone.tasks;
      }
      entry = new Outcomes(stage, revision);
      this.entries.set(key, entry);
    }
    entry.add(Boolean(ok), details.retried ?? false, details.cause, seconds);
  }

  /**
   * The oldest entries held, at most `perStage` of each stage; they leave the ledger
   * (what is left waits for the next report).
   */
  drain(perStage: number = PER_STAGE_IN_A_REPORT): Outcomes[] {
    const taken: Outcomes[] = [];
    const counts = new Map<StageType, number>();
    for (const [key, entry] of [...this.entries]) {
      const count = counts.get(entry.stage) ?? 0;
      if (count < perStage) {
        counts.set(entry.stage, count + 1);
        taken.push(entry);
        this.entries.delete(key);
      }
    }
    return taken;
  }

  /** Counts `entries` as dropped (a report the server refused for good). */
  discard(entries: readonly Outcomes[]): void {
    for (const entry of entries) this.dropped += entry.tasks;
  }
}
