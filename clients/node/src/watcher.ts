/**
 * A hot in-memory copy of the watched stages, kept current by a WatchConfig stream.
 *
 * The stream runs in the background: the first answer is a snapshot; afterwards every
 * committed change arrives as it happens and a heartbeat proves the stream is alive.
 * When the stream breaks (server restart, network, no message for `idleTimeoutMs`) the
 * watcher keeps serving what it holds, marks itself stale, waits a jittered exponential
 * backoff and reconnects with `resume_revision`, so the server sends only the changes it
 * missed. The held copy is swapped as a whole, never edited in place, and its revision
 * never goes backwards (the copy, its state and the listeners are `store.ts`; this module
 * is the stream). Mirrors the Python client's `ConfigClient`.
 *
 * A newer server may send a config this client cannot represent (a provider kind or a
 * stage it does not know): that stage keeps the last config it had (or stays absent),
 * one process warning says so, the revision still advances, and everything else —
 * the stream, the state, the other stages — carries on. Such a config is refused: the
 * watcher's reports (`reporter.ts`) NACK it, and {@link ConfigWatcher.appliedRevision}
 * stays below it until a newer config of that stage applies.
 *
 * States:
 *
 *     connecting ──snapshot──▶ ready ──stream lost──▶ stale ──resumed──▶ ready
 *         │ ▲                                           │
 *         │ └──────── stream lost before any config ────┘ (keeps retrying)
 *         └─ UNAUTHENTICATED / PERMISSION_DENIED / INVALID_ARGUMENT / UNIMPLEMENTED ─▶ fatal
 *     any ──close()──▶ closed
 */

import { hostname } from "node:os";

import type { Client } from "@connectrpc/connect";

import { Backoff, type BackoffOptions } from "./backoff.js";
import { UnrepresentableConfig, configFromPb, reasonFromPb, stageToPb } from "./convert.js";
import {
  ClientClosedError,
  NotReadyError,
  RPCError,
  UnavailableError,
  translateError,
  type StageConfigError,
  type StatusCode,
} from "./errors.js";
import type { StageConfigService, WatchConfigResponse } from "./gen/stageconfig/v1/stage_config_pb.js";
import type { OutcomeDetails } from "./outcomes.js";
import { StatusReporter, appliedRevision, type Refusal } from "./reporter.js";
import {
  WatcherStore,
  type ChangeListener,
  type ConfigSnapshot,
  type StateListener,
  type WatcherState,
} from "./store.js";
import { STAGE_TYPES, StageConfig, type StageType } from "./types.js";
import { UnknownValueWarnings } from "./unknown-values.js";
import { CLIENT_VERSION } from "./version.js";

export type { ChangeListener, ConfigChangeEvent, ConfigSnapshot, StateListener, WatcherState } from "./store.js";

/** Settings of a watcher. */
export interface WatchOptions {
  /** The stages to watch; default (or empty) all four. */
  readonly stages?: readonly StageType[];
  /** A name the server shows in ListWatchers; default `<hostname>/<pid>`. */
  readonly clientId?: string;
  /** Reconnect waits. */
  readonly backoff?: BackoffOptions;
  /**
   * No message (heartbeats included) for this long means the stream is dead: drop it and
   * reconnect. Keep it above the server's heartbeat period (10 s by default). Default 30 000.
   */
  readonly idleTimeoutMs?: number;
  /**
   * How often the watcher reports to the server (ReportStatus) what it applied and what
   * it refused, even with nothing new (a keepalive: the server calls a client silent
   * after three intervals without one). A report also follows every applied revision
   * at once. Reports carry the task outcomes recorded with
   * {@link ConfigWatcher.recordOutcome} since the previous report. Default 30 000.
   */
  readonly reportIntervalMs?: number;
}

const FATAL_CODES: ReadonlySet<StatusCode> = new Set<StatusCode>([
  "UNAUTHENTICATED",
  "PERMISSION_DENIED",
  "INVALID_ARGUMENT",
  "UNIMPLEMENTED",
]);

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * The hot copy. Create it with `StageConfigClient.watchConfig()`; it connects at once.
 * Read it with {@link get} (from memory, no I/O); wait for the first config with
 * {@link waitReady}; count each task it served with {@link recordOutcome}; stop it
 * with {@link close}.
 */
export class ConfigWatcher {
  private readonly store: WatcherStore;
  private readonly closing = new AbortController();
  private readonly loop: Promise<void>;
  private readonly stages: readonly StageType[];
  private readonly clientId: string;
  private readonly idleTimeoutMs: number;
  private readonly backoff: Backoff;
  private readonly unknownValues = new UnknownValueWarnings();
  private readonly refusals = new Map<StageType, Refusal>();
  private readonly reporter: StatusReporter;

  /**
   * @internal Use `StageConfigClient.watchConfig()`. `resetConnection` drops the HTTP/2
   * connection after an idle timeout: a silent connection is presumed dead, and a new
   * stream on it would hang just the same.
   */
  constructor(
    private readonly rpc: Client<typeof StageConfigService>,
    options: WatchOptions = {},
    private readonly resetConnection: () => void = () => {},
  ) {
    // Empty means all, as on the wire.
    this.stages = [...new Set(options.stages?.length ? options.stages : STAGE_TYPES)];
    this.stages.forEach(stageToPb); // an unknown stage name throws here, not in the loop
    this.clientId = options.clientId ?? `${hostname()}/${process.pid}`;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 30_000;
    this.backoff = new Backoff(options.backoff);
    const reportIntervalMs = options.reportIntervalMs ?? 30_000;
    if (!(reportIntervalMs > 0)) throw new RangeError("reportIntervalMs must be positive");
    this.reporter = new StatusReporter(rpc, this.clientId, this.stages, reportIntervalMs, () =>
      this.store.hasData
        ? { position: this.store.current.revision, configs: this.store.current.configs, refusals: this.refusals }
        : undefined,
    );
    this.store = new WatcherStore(() => this.reporter.wake());
    this.loop = this.run();
  }

  /** The current state. */
  get state(): WatcherState {
    return this.store.state;
  }

  /** Why the watcher last left `ready` (or never reached it); undefined while healthy. */
  get lastError(): StageConfigError | undefined {
    return this.store.lastError;
  }

  /** The revision of the held copy (0 before the first snapshot): how far the stream went. */
  get revision(): number {
    return this.store.current.revision;
  }

  /**
   * The newest revision this watcher applied, as its reports tell the server: its
   * {@link revision}, held below a revision it refused (a config it cannot represent)
   * until a newer config of that stage applies.
   */
  get appliedRevision(): number {
    if (!this.store.hasData) return 0;
    const { revision, configs } = this.store.current;
    return appliedRevision({ position: revision, configs, refusals: this.refusals });
  }

  /** Reports the server acknowledged (ReportStatus). */
  get reportsSent(): number {
    return this.reporter.sent;
  }

  /**
   * Task outcomes recorded here but never reported: beyond the bound (64 stage revisions
   * waiting) while the server was away, or in a report the server refused.
   */
  get outcomesDropped(): number {
    return this.reporter.ledger.dropped;
  }

  /** The whole held copy, immutable. */
  snapshot(): ConfigSnapshot {
    return this.store.current;
  }

  /**
   * A stage's config from memory: no I/O. Undefined when the stage has no config on
   * the server. Throws {@link ClientClosedError} after close; before the first snapshot,
   * {@link NotReadyError} (or, once the server refused the watch, its refusal).
   */
  get(stage: StageType): StageConfig | undefined {
    const { state, lastError } = this.store;
    if (state === "closed") throw new ClientClosedError("the watcher is closed");
    if (!this.store.hasData) {
      if (state === "fatal" && lastError !== undefined) throw lastError;
      throw new NotReadyError(`no config received yet (state ${state}${lastError ? `: ${lastError.message}` : ""})`);
    }
    this.ensureWatched(stage);
    return this.store.current.configs.get(stage);
  }

  /**
   * Counts one task run with `stage`'s config (no I/O): the next report carries it, in
   * the outcomes of the revision the stage's config in use has now (or `revision`; 0
   * with none), so `GetFleetStatus` — and a rollout judging its canaries — sees per
   * revision how tasks went. `ok`: it succeeded; else it failed because of `cause` (one
   * word, e.g. an error class; 32 distinct causes of ≤ 64 printable characters per
   * revision, the rest count as `other`); `retried`: it failed and will be retried
   * (counted apart, not as failed). `durationSeconds` lands in the contract's 14
   * duration buckets. Throws `TypeError` for a stage not watched, `RangeError` for a
   * negative duration or revision.
   */
  recordOutcome(stage: StageType, ok: boolean, details: OutcomeDetails = {}): void {
    this.ensureWatched(stage);
    let revision = details.revision;
    if (revision === undefined) revision = this.store.current.configs.get(stage)?.revision ?? 0;
    else if (!Number.isSafeInteger(revision) || revision < 0) throw new RangeError("revision must be an integer >= 0");
    this.reporter.ledger.record(stage, revision, ok, details);
  }

  /**
   * Resolves once a config is held (at once if one is, even while stale). Rejects with
   * {@link NotReadyError} after `timeoutMs`, with the server's refusal when the watcher
   * turns fatal, with {@link ClientClosedError} when it is closed first.
   */
  waitReady(timeoutMs: number): Promise<void> {
    return this.store.waitReady(timeoutMs);
  }

  /** Calls `listener` after every change of the copy; returns a function that unsubscribes. */
  onChange(listener: ChangeListener): () => void {
    return this.store.onChange(listener);
  }

  /** Calls `listener` on every state transition; returns a function that unsubscribes. */
  onStateChange(listener: StateListener): () => void {
    return this.store.onStateChange(listener);
  }

  /**
   * Stops the stream and the reconnects, and delivers the outcomes not reported yet (one
   * last report, a second at most); resolves when the background work is done.
   */
  async close(): Promise<void> {
    if (!this.closing.signal.aborted) {
      this.closing.abort(new ClientClosedError("the watcher was closed"));
    }
    await Promise.all([this.loop, this.reporter.close()]);
    this.store.setState("closed", undefined); // also after fatal, when the loop ended by itself
  }

  private ensureWatched(stage: StageType): void {
    if (!this.stages.includes(stage)) {
      throw new TypeError(`stage ${stage} is not watched (watching ${this.stages.join(", ")})`);
    }
  }

  /** Applies one stream message; returns true when the copy is at the server's head. */
  private apply(response: WatchConfigResponse): boolean {
    const event = response.event;
    switch (event.case) {
      case "snapshot": {
        const revision = Number(event.value.revision);
        // A server behind us (a lagging replica, a restored backup) answers a resume with
        // an older snapshot: keep the newer copy; revisions never go backwards.
        if (this.store.hasData && revision < this.store.current.revision) return true;
        const configs = new Map<StageType, StageConfig>();
        for (const message of event.value.configs) {
          const config = configFromPb(message);
          if (config instanceof UnrepresentableConfig) {
            const kept = this.keepLast(config);
            if (kept !== undefined) configs.set(kept.stageType, kept);
          } else if (this.stages.includes(config.stageType)) {
            this.unknownValues.readable(config.stageType);
            configs.set(config.stageType, config);
          }
        }
        this.store.publish(Object.freeze({ revision, configs }), { kind: "snapshot", revision, reason: undefined });
        return true;
      }
      case "change": {
        const revision = Number(event.value.revision);
        const config = event.value.config === undefined ? undefined : configFromPb(event.value.config);
        if (config instanceof UnrepresentableConfig && revision > this.store.current.revision) {
          // Nothing the client can show changed, but the revision was applied: resume after it.
          this.keepLast(config);
          this.store.advance(revision);
          return false;
        }
        if (revision <= this.store.current.revision || !(config instanceof StageConfig)) return false;
        if (!this.stages.includes(config.stageType)) return false;
        this.unknownValues.readable(config.stageType);
        const configs = new Map(this.store.current.configs);
        configs.set(config.stageType, config);
        this.store.publish(Object.freeze({ revision, configs }), {
          kind: "change",
          revision,
          reason: reasonFromPb(event.value.reason),
        });
        return false;
      }
      case "heartbeat":
        // After a resume the missed changes come first, then a heartbeat: we are current.
        return this.store.hasData;
      default:
        return false; // a message kind newer than this client
    }
  }

  /**
   * What a watched stage keeps when its new config cannot be represented: the config it
   * held, if any. Warns once (an unknown stage is not watched, but is reported too).
   */
  private keepLast(config: UnrepresentableConfig): StageConfig | undefined {
    if (config.stage !== undefined && !this.stages.includes(config.stage)) return undefined;
    const kept = config.stage === undefined ? undefined : this.store.current.configs.get(config.stage);
    this.unknownValues.report(config, kept);
    if (config.stage !== undefined && config.revision > (this.refusals.get(config.stage)?.revision ?? 0)) {
      this.refusals.set(config.stage, { revision: config.revision, reason: config.toString() });
    }
    return kept;
  }

  private async run(): Promise<void> {
    const closed = this.closing.signal;
    while (!closed.aborted) {
      const attempt = new AbortController();
      const stop = (): void => attempt.abort();
      closed.addEventListener("abort", stop, { once: true });
      let idleTimer: NodeJS.Timeout | undefined;
      let idle = false;
      const armIdle = (): void => {
        clearTimeout(idleTimer);
        idleTimer = setTimeout(() => {
          idle = true;
          attempt.abort();
        }, this.idleTimeoutMs);
      };
      let failure: StageConfigError;
      try {
        armIdle();
        const stream = this.rpc.watchConfig(
          {
            stageTypes: this.stages.map(stageToPb),
            clientId: this.clientId,
            clientVersion: CLIENT_VERSION,
            ...(this.store.hasData && { resumeRevision: BigInt(this.store.current.revision) }),
          },
          { signal: attempt.signal },
        );
        for await (const response of stream) {
          armIdle();
          if (this.apply(response) && this.store.state !== "ready") {
            this.store.setState("ready", undefined);
            this.backoff.reset();
          }
        }
        failure = new UnavailableError("UNAVAILABLE", "the server ended the watch stream");
      } catch (e) {
        if (idle) {
          failure = new UnavailableError("UNAVAILABLE", `no message from the server for ${this.idleTimeoutMs} ms`);
          this.resetConnection();
        } else {
          failure = translateError(e);
        }
      } finally {
        clearTimeout(idleTimer);
        closed.removeEventListener("abort", stop);
      }
      if (closed.aborted) break;
      if (failure instanceof RPCError && FATAL_CODES.has(failure.code)) {
        this.store.setState("fatal", failure);
        return;
      }
      this.store.setState(this.store.hasData ? "stale" : "connecting", failure);
      await sleep(this.backoff.next(), closed);
    }
    this.store.setState("closed", undefined);
  }
}
