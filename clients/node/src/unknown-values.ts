/**
 * The warning a watcher gives when a newer server sends a config this client cannot
 * represent (a stage or provider kind it does not know). The watcher keeps serving that
 * stage's last config; this says why, once per stage and value — not again on every
 * resume snapshot that repeats the same config, and again only after the stage had a
 * config this client could read in between.
 */

import type { UnrepresentableConfig } from "./convert.js";
import type { StageConfig, StageType } from "./types.js";

/** The `type` of the process warning (`process.on("warning", w => w.name)`). */
export const UNKNOWN_VALUE_WARNING_TYPE = "StageConfigWarning";
/** The `code` of the process warning, to filter on or to silence. */
export const UNKNOWN_VALUE_WARNING_CODE = "STAGECONFIG_UNKNOWN_VALUE";

/** Reports each unrepresentable config once, as a process warning. */
export class UnknownValueWarnings {
  /** Per stage (or unknown stage number), the value last reported for it. */
  private readonly reported = new Map<string, string>();

  /** Warns about `config` unless this stage was already reported with this value; `kept` is what the watcher serves instead. */
  report(config: UnrepresentableConfig, kept: StageConfig | undefined): void {
    const key = config.stage ?? `stageType=${config.value}`;
    const value = `${config.field}=${config.value}`;
    if (this.reported.get(key) === value) return;
    this.reported.set(key, value);
    let outcome: string;
    if (config.stage === undefined) outcome = "ignoring it";
    else if (kept === undefined) outcome = `${config.stage} stays unconfigured`;
    else outcome = `keeping the ${config.stage} config from revision ${kept.revision}`;
    process.emitWarning(
      `stageconfig: ${config}; ${outcome} (the server is newer than this client: upgrade the client)`,
      { type: UNKNOWN_VALUE_WARNING_TYPE, code: UNKNOWN_VALUE_WARNING_CODE },
    );
  }

  /** `stage` has a config this client can read again: a later unknown value warns anew. */
  readable(stage: StageType): void {
    this.reported.delete(stage);
  }
}
