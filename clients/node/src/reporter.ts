/**
 * Acknowledgements: a watcher tells the server which revision it applied and which
 * configs it could not use (ReportStatus), so `ListWatchers` and `GetFleetStatus` show
 * what the client *applied*, not only what it was sent, and how its tasks went (task
 * outcomes per stage and revision, drained from the {@link OutcomeLedger} since the
 * previous report). Mirrors the Python client's reports (without route breakers: the
 * Node client has no router).
 *
 * A report follows every applied revision (bursts within 100 ms make one), and one goes
 * out every `reportIntervalMs` even with nothing new: a keepalive, so the server can
 * tell a silent client (gone) from an idle one. A report the server did not answer is
 * retried as it is — same `sequence`, same counts: the server counts a (client id,
 * sequence) once — with a jittered backoff, while new outcomes wait in the ledger for the
 * next report; one it refuses for good (an older server without ReportStatus, a token
 * without the worker role) is dropped, its tasks counted as dropped, and reporting goes
 * on at the interval. Outcomes beyond what one report may carry go in the next one, sent
 * at once. At `close()` one short last attempt delivers what was not sent yet. The
 * sequence starts from the clock in microseconds, so a restarted process with the same
 * client id is never taken for a retry.
 */

import { hostname } from "node:os";

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";

import { Backoff } from "./backoff.js";
import { stageToPb } from "./convert.js";
import { RPCError, translateError, type StatusCode } from "./errors.js";
import {
  ReportStatusRequestSchema,
  type ReportStatusRequest,
  type StageConfigService,
  type TaskOutcomesSchema,
} from "./gen/stageconfig/v1/stage_config_pb.js";
import { OutcomeLedger, type Outcomes } from "./outcomes.js";
import type { StageConfig, StageType } from "./types.js";
import { CLIENT_VERSION } from "./version.js";

/** A stage's newest refused revision, and why. */
export interface Refusal {
  readonly revision: number;
  readonly reason: string;
}

/** What a report says, read from the watcher when the report is built. */
export interface ReportSource {
  /** How far the stream has gone (refused revisions included); 0 before any config. */
  readonly position: number;
  /** The configs in use. */
  readonly configs: ReadonlyMap<StageType, StageConfig>;
  /** Each stage's newest refusal. */
  readonly refusals: ReadonlyMap<StageType, Refusal>;
}

const COALESCE_MS = 100;
const CALL_TIMEOUT_MS = 5_000;
/** At close, one last attempt to deliver unsent outcomes, this long at most. */
const FLUSH_TIMEOUT_MS = 1_000;
const RETRIED: ReadonlySet<StatusCode> = new Set<StatusCode>([
  "UNAVAILABLE",
  "DEADLINE_EXCEEDED",
  "CANCELLED",
  "RESOURCE_EXHAUSTED",
  "ABORTED",
  "INTERNAL",
  "UNKNOWN",
]);

/**
 * The newest revision applied: the stream position, held below a refused revision
 * while that stage still uses an older config (every revision up to it is in use).
 */
export function appliedRevision(source: ReportSource): number {
  let applied = source.position;
  for (const [stage, refusal] of source.refusals) {
    const used = source.configs.get(stage);
    if (used === undefined || refusal.revision > used.revision) {
      applied = Math.min(applied, refusal.revision - 1);
    }
  }
  return Math.max(applied, 0);
}

function outcomesToPb(entry: Outcomes): MessageInitShape<typeof TaskOutcomesSchema> {
  return {
    revision: BigInt(entry.revision),
    succeeded: BigInt(entry.succeeded),
    failed: BigInt(entry.failed),
    retried: BigInt(entry.retried),
    failuresByCause: Object.fromEntries([...entry.failuresByCause].map(([cause, n]) => [cause, BigInt(n)])),
    durationBuckets: entry.durationBuckets.map((n) => BigInt(n)),
  };
}

/** Sends one watcher's reports; `wake()` after every applied revision, `close()` at the end. */
export class StatusReporter {
  private sequence = BigInt(Date.now()) * 1000n;
  private pending: ReportStatusRequest | undefined;
  /** The ledger entries `pending` carries: counted as dropped if it is refused. */
  private pendingOutcomes: Outcomes[] = [];
  /** Outcomes were left in the ledger when `pending` was built: send the next at once. */
  private overflow = false;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private sending = false;
  private closed = false;
  private changed = false;
  private readonly backoff: Backoff;
  private readonly aborts = new AbortController();
  /** Reports the server acknowledged. */
  sent = 0;

  constructor(
    private readonly rpc: Client<typeof StageConfigService>,
    private readonly clientId: string,
    private readonly stages: readonly StageType[],
    private readonly intervalMs: number,
    private readonly source: () => ReportSource | undefined,
    /** The outcomes recorded and not reported yet. */
    readonly ledger: OutcomeLedger = new OutcomeLedger(),
  ) {
    this.backoff = new Backoff({ initialMs: 500, maxMs: Math.max(500, intervalMs) });
    this.schedule(intervalMs);
  }

  /** Something changed (a revision applied or refused): report within a second. */
  wake(): void {
    this.changed = true;
    if (!this.sending) this.schedule(COALESCE_MS);
  }

  /**
   * Stops reporting: a report in flight is cut short, then one last short attempt (at
   * most a second) delivers what is unsent — a pending report, recorded outcomes. What
   * that attempt does not deliver (or carry) is counted as dropped.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.aborts.abort();
    await this.running;
    if (this.pending === undefined && this.ledger.size === 0) return;
    if (this.pending === undefined) this.pending = this.build();
    if (this.pending === undefined) return;
    try {
      await this.rpc.reportStatus(this.pending, { timeoutMs: FLUSH_TIMEOUT_MS });
      this.sent += 1;
    } catch {
      this.ledger.discard(this.pendingOutcomes);
    }
    this.pending = undefined;
    this.pendingOutcomes = [];
    // What the last report could not carry (a retried one was built before them) is lost.
    this.ledger.discard(this.ledger.drain(Number.POSITIVE_INFINITY));
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.running = this.tick();
    }, ms);
    this.timer.unref(); // reports never keep a process alive
  }

  private async tick(): Promise<void> {
    if (this.closed || this.sending) return;
    if (this.pending === undefined) this.pending = this.build();
    if (this.pending === undefined) {
      this.schedule(this.intervalMs);
      return;
    }
    this.sending = true;
    let next = this.intervalMs;
    try {
      // A deadline within the interval (1 to 5 s), as the Python client's.
      const timeoutMs = Math.min(CALL_TIMEOUT_MS, Math.max(1_000, this.intervalMs));
      await this.rpc.reportStatus(this.pending, { timeoutMs, signal: this.aborts.signal });
      this.sent += 1;
      this.pending = undefined;
      this.pendingOutcomes = [];
      this.backoff.reset();
      // Something changed while this one was on its way, or outcomes were left behind
      // (more than one report may carry): the next report at once.
      if (this.changed || this.overflow) next = 0;
    } catch (e) {
      const error = translateError(e);
      if (this.closed) {
        // Cut short by close(): its last attempt sends this report again.
      } else if (error instanceof RPCError && !RETRIED.has(error.code)) {
        // Refused for good: retrying cannot change that; its tasks are lost.
        this.ledger.discard(this.pendingOutcomes);
        this.pending = undefined;
        this.pendingOutcomes = [];
        this.backoff.reset();
      } else {
        next = this.backoff.next(); // the same report again, same sequence
      }
    } finally {
      this.sending = false;
    }
    this.schedule(next);
  }

  private build(): ReportStatusRequest | undefined {
    const source = this.source();
    if (source === undefined) return undefined;
    this.changed = false;
    const outcomes = this.ledger.drain();
    this.overflow = this.ledger.size > 0;
    this.pendingOutcomes = outcomes;
    this.sequence += 1n;
    return create(ReportStatusRequestSchema, {
      clientId: this.clientId,
      appliedRevision: BigInt(appliedRevision(source)),
      host: hostname(),
      pid: process.pid,
      clientVersion: CLIENT_VERSION,
      sequence: this.sequence,
      reportIntervalSeconds: Math.max(1, Math.ceil(this.intervalMs / 1000)),
      stages: this.stages.map((stage) => {
        const refusal = source.refusals.get(stage);
        return {
          stageType: stageToPb(stage),
          revision: BigInt(source.configs.get(stage)?.revision ?? 0),
          nackRevision: BigInt(refusal?.revision ?? 0),
          nackReason: refusal?.reason ?? "",
          outcomes: outcomes.filter((entry) => entry.stage === stage).map(outcomesToPb),
        };
      }),
    });
  }
}
