/**
 * A watcher's held copy and who hears about it: the current {@link ConfigSnapshot}, the
 * {@link WatcherState} (with the error that caused it), and the change and state
 * listeners. No I/O: `watcher.ts` feeds it from the WatchConfig stream.
 *
 * The copy is swapped as a whole ({@link WatcherStore.publish}), never edited in place;
 * listeners run after the swap, and an exception in one is reported as a process warning
 * without stopping the others or the stream.
 */

import { ClientClosedError, NotReadyError, type StageConfigError } from "./errors.js";
import { STAGE_TYPES, type ChangeReason, type StageConfig, type StageType } from "./types.js";

/** Where a watcher is: see the state diagram in `watcher.ts`. */
export type WatcherState = "connecting" | "ready" | "stale" | "fatal" | "closed";

/** Every watched stage at one revision; immutable, replaced as a whole on each change. */
export interface ConfigSnapshot {
  /** The revision of the newest change applied (0 before the first snapshot). */
  readonly revision: number;
  /** The configured stages; a stage with no config (and no fallback) is absent. */
  readonly configs: ReadonlyMap<StageType, StageConfig>;
}

/** What a change listener receives. */
export interface ConfigChangeEvent {
  /** `snapshot`: the whole copy was replaced; `change`: one stage moved to a new revision. */
  readonly kind: "snapshot" | "change";
  /** The revision the copy is at now. */
  readonly revision: number;
  /** The stages whose config differs from before (added, changed or removed). */
  readonly changed: readonly StageType[];
  /** Why the revision was written (`change` only). */
  readonly reason: ChangeReason | undefined;
  /** The copy after the event. */
  readonly snapshot: ConfigSnapshot;
}

/** Called after the copy changed; exceptions are reported as process warnings. */
export type ChangeListener = (event: ConfigChangeEvent) => void;
/** Called on every state transition, with the error that caused it, if any. */
export type StateListener = (state: WatcherState, error: StageConfigError | undefined) => void;

const EMPTY: ConfigSnapshot = Object.freeze({ revision: 0, configs: new Map() });

function changedStages(before: ConfigSnapshot, after: ConfigSnapshot): StageType[] {
  return STAGE_TYPES.filter((stage) => {
    const a = before.configs.get(stage);
    const b = after.configs.get(stage);
    return a?.revision !== b?.revision; // undefined on one side only counts as a change
  });
}

function notify<A extends unknown[]>(listeners: Set<(...args: A) => void>, what: string, ...args: A): void {
  for (const listener of [...listeners]) {
    try {
      listener(...args);
    } catch (e) {
      process.emitWarning(`stageconfig ${what} listener threw: ${String(e)}`);
    }
  }
}

/** The held copy, the state and the listeners of one watcher. */
export class WatcherStore {
  private copy: ConfigSnapshot = EMPTY;
  private held = false;
  private currentState: WatcherState = "connecting";
  private error: StageConfigError | undefined;
  private readonly changeListeners = new Set<ChangeListener>();
  private readonly stateListeners = new Set<StateListener>();

  /** `moved` is called whenever the revision moves (the reporter's wake-up). */
  constructor(private readonly moved: () => void) {}

  /** The copy held now. */
  get current(): ConfigSnapshot {
    return this.copy;
  }

  /** A snapshot has arrived (the copy is real, even if empty). */
  get hasData(): boolean {
    return this.held;
  }

  /** The current state. */
  get state(): WatcherState {
    return this.currentState;
  }

  /** Why the watcher last left `ready` (or never reached it); undefined while healthy. */
  get lastError(): StageConfigError | undefined {
    return this.error;
  }

  /** Moves to `state`; listeners hear only real transitions. */
  setState(state: WatcherState, error: StageConfigError | undefined): void {
    if (state === "ready") this.error = undefined;
    else if (error !== undefined) this.error = error;
    if (state === this.currentState) return;
    this.currentState = state;
    notify(this.stateListeners, "state", state, error);
  }

  /** Swaps in `next` and tells the change listeners what changed. */
  publish(next: ConfigSnapshot, event: Omit<ConfigChangeEvent, "changed" | "snapshot">): void {
    const before = this.copy;
    this.copy = next;
    this.held = true;
    if (next.revision !== before.revision) this.moved();
    const full: ConfigChangeEvent = Object.freeze({ ...event, changed: changedStages(before, next), snapshot: next });
    notify(this.changeListeners, "change", full);
  }

  /** Moves the revision on with the same configs (a change nothing visible came of). */
  advance(revision: number): void {
    this.copy = Object.freeze({ revision, configs: this.copy.configs });
    this.moved();
  }

  /** See `ConfigWatcher.onChange`. */
  onChange(listener: ChangeListener): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /** See `ConfigWatcher.onStateChange`. */
  onStateChange(listener: StateListener): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  /** See `ConfigWatcher.waitReady`. */
  waitReady(timeoutMs: number): Promise<void> {
    if (this.held) return Promise.resolve();
    if (this.currentState === "fatal" && this.error !== undefined) return Promise.reject(this.error);
    if (this.currentState === "closed") return Promise.reject(new ClientClosedError("the watcher is closed"));
    return new Promise((resolve, reject) => {
      const finish = (error: StageConfigError | undefined): void => {
        clearTimeout(timer);
        this.stateListeners.delete(listener);
        if (error === undefined) resolve();
        else reject(error);
      };
      const listener: StateListener = (state, error) => {
        if (this.held) finish(undefined);
        else if (state === "fatal") finish(error ?? new NotReadyError("the server refused the watch"));
        else if (state === "closed") finish(new ClientClosedError("the watcher was closed"));
      };
      const timer = setTimeout(() => {
        const why = this.error ? `; last error: ${this.error.message}` : "";
        finish(new NotReadyError(`no config within ${timeoutMs} ms (state ${this.currentState}${why})`));
      }, timeoutMs);
      this.stateListeners.add(listener);
    });
  }
}
