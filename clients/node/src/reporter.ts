/**
 * Acknowledgements: a watcher tells the server which revision it applied and which
 * configs it could not use (ReportStatus), so `ListWatchers` and `GetFleetStatus` show
 * what the client *applied*, not only what it was sent. Mirrors the Python client's
 * reports, without task outcomes.
 *
 * A report follows every applied revision (bursts within 100 ms make one), and one goes
 * out every `reportIntervalMs` even with nothing new: a keepalive, so the server can
 * tell a silent client (gone) from an idle one. A report the server did not answer is
 * retried as it is — same `sequence` — with a jittered backoff; one it refuses for good
 * (an older server without ReportStatus, a token without the worker role) is dropped and
 * reporting goes on at the interval. The sequence starts from the clock in microseconds,
 * so a restarted process with the same client id is never taken for a retry.
 */

import { hostname } from "node:os";

import { create } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";

import { Backoff } from "./backoff.js";
import { stageToPb } from "./convert.js";
import { RPCError, translateError, type StatusCode } from "./errors.js";
import {
  ReportStatusRequestSchema,
  type ReportStatusRequest,
  type StageConfigService,
} from "./gen/stageconfig/v1/stage_config_pb.js";
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

/** Sends one watcher's reports; `wake()` after every applied revision, `close()` at the end. */
export class StatusReporter {
  private sequence = BigInt(Date.now()) * 1000n;
  private pending: ReportStatusRequest | undefined;
  private timer: NodeJS.Timeout | undefined;
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
  ) {
    this.backoff = new Backoff({ initialMs: 500, maxMs: Math.max(500, intervalMs) });
    this.schedule(intervalMs);
  }

  /** Something changed (a revision applied or refused): report within a second. */
  wake(): void {
    this.changed = true;
    if (!this.sending) this.schedule(COALESCE_MS);
  }

  /** Stops reporting (an in-flight report is abandoned). */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.aborts.abort();
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), ms);
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
      await this.rpc.reportStatus(this.pending, { timeoutMs: CALL_TIMEOUT_MS, signal: this.aborts.signal });
      this.sent += 1;
      this.pending = undefined;
      this.backoff.reset();
      if (this.changed) next = 0; // something changed while this one was on its way
    } catch (e) {
      const error = translateError(e);
      if (error instanceof RPCError && !RETRIED.has(error.code)) {
        this.pending = undefined; // refused for good: retrying cannot change that
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
        };
      }),
    });
  }
}
