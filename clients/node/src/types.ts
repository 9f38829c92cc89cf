/**
 * The client's domain types: string enums and an immutable config. Proto types stop
 * at `convert.ts`; user code sees only these (as in the Python client's `_types.py`).
 */

import { inspect } from "node:util";

/** The steps of the content pipeline. */
export const STAGE_TYPES = ["POEM", "VOICE", "SONG", "CLIP"] as const;
/** A step of the content pipeline. */
export type StageType = (typeof STAGE_TYPES)[number];

/** The AI providers a stage can use. */
export const PROVIDER_KINDS = ["YANDEX_GPT", "GEMINI", "OPENAI", "SPEECHKIT", "SUNO", "PIKA"] as const;
/** An AI provider. Allowed per stage: POEM: YANDEX_GPT, GEMINI, OPENAI; VOICE: SPEECHKIT; SONG: SUNO; CLIP: PIKA. */
export type ProviderKind = (typeof PROVIDER_KINDS)[number];

/** The health values this client knows; an unknown one from a newer server reads as UNSPECIFIED. */
export const CONFIG_STATUSES = [
  "ACTIVE",
  "WARNING",
  "INVALID",
  "ERROR",
  "UNVERIFIED",
  "UNSPECIFIED",
] as const;
/** Health of a stage's config as the server last saw it. */
export type ConfigStatus = (typeof CONFIG_STATUSES)[number];

/** The sources this client knows; an unknown one from a newer server reads as UNSPECIFIED. */
export const CONFIG_SOURCES = ["DATABASE", "FALLBACK", "UNCONFIGURED", "UNSPECIFIED"] as const;
/** Where the server took a config from. */
export type ConfigSource = (typeof CONFIG_SOURCES)[number];

/** The reasons this client knows; an unknown one from a newer server reads as UNSPECIFIED. */
export const CHANGE_REASONS = ["ADMIN_UPDATE", "SYNC", "MODEL_REPLACED", "ROLLBACK", "IMPORT", "ROLLOUT_STARTED", "ROLLOUT_PROMOTED", "ROLLOUT_ABORTED", "UNSPECIFIED"] as const;
/** Why a revision was written. */
export type ChangeReason = (typeof CHANGE_REASONS)[number];

/** The fields of a {@link StageConfig}. */
export interface StageConfigFields {
  readonly stageType: StageType;
  readonly providerKind: ProviderKind;
  /** Plaintext for the worker role; a mask such as `sk-…a1b2` otherwise (see `apiKeyMasked`). */
  readonly apiKey: string;
  readonly model: string;
  /** The global revision at which this stage last changed. */
  readonly revision: number;
  readonly status: ConfigStatus;
  readonly source: ConfigSource;
  /** Provider-specific options, e.g. YandexGPT `folder_id`. */
  readonly options: Readonly<Record<string, string>>;
  /** Why the status is what it is, in words an admin can act on. */
  readonly statusReason: string;
  readonly apiKeyMasked: boolean;
  /** Short, non-reversible fingerprint of the key. */
  readonly apiKeyFingerprint: string;
  readonly updatedAt: Date | undefined;
  readonly modelsCacheUpdatedAt: Date | undefined;
  /** Routes to use, in order, when the primary fails (empty from an older server). */
  readonly fallbacks?: readonly Route[];
}

/** The fields of a {@link Route}. */
export interface RouteFields {
  readonly providerKind: ProviderKind;
  /** Plaintext for the worker role; a mask otherwise (see `apiKeyMasked`). */
  readonly apiKey: string;
  readonly model: string;
  readonly options: Readonly<Record<string, string>>;
  readonly status: ConfigStatus;
  readonly statusReason: string;
  readonly apiKeyMasked: boolean;
  readonly apiKeyFingerprint: string;
  /**
   * Its place as the server numbers routes: 0 the primary, i `fallbacks[i-1]`. A fallback
   * this client cannot read is skipped, not renumbered around.
   */
  readonly index: number;
}

function maskKey(key: string): string {
  return key.length >= 12 ? `…${key.slice(-4)}` : "…";
}

/**
 * One way to serve a stage (a fallback of a {@link StageConfig}), frozen. Like the
 * config, it never shows a plaintext key in `console.log`, `toString` or JSON.
 */
export class Route implements RouteFields {
  readonly providerKind: ProviderKind;
  readonly apiKey: string;
  readonly model: string;
  readonly options: Readonly<Record<string, string>>;
  readonly status: ConfigStatus;
  readonly statusReason: string;
  readonly apiKeyMasked: boolean;
  readonly apiKeyFingerprint: string;
  readonly index: number;

  /** Builds a frozen route; the client does this from the server's answers. */
  constructor(fields: RouteFields) {
    this.providerKind = fields.providerKind;
    this.apiKey = fields.apiKey;
    this.model = fields.model;
    this.options = Object.freeze({ ...fields.options });
    this.status = fields.status;
    this.statusReason = fields.statusReason;
    this.apiKeyMasked = fields.apiKeyMasked;
    this.apiKeyFingerprint = fields.apiKeyFingerprint;
    this.index = fields.index;
    Object.freeze(this);
  }

  /** The fields with the key masked, for logs. */
  toJSON(): Record<string, unknown> {
    return {
      index: this.index,
      providerKind: this.providerKind,
      apiKey: this.apiKeyMasked ? this.apiKey : maskKey(this.apiKey),
      model: this.model,
      options: this.options,
      status: this.status,
      statusReason: this.statusReason,
      apiKeyMasked: this.apiKeyMasked,
      apiKeyFingerprint: this.apiKeyFingerprint,
    };
  }

  /** A one-line description with the key masked. */
  toString(): string {
    const key = this.apiKeyMasked ? this.apiKey : maskKey(this.apiKey);
    return (
      `Route(index=${this.index}, providerKind=${this.providerKind}, ` +
      `model=${JSON.stringify(this.model)}, status=${this.status}, apiKey=${JSON.stringify(key)})`
    );
  }

  /** What `console.log` shows: never the plaintext key. */
  [inspect.custom](): string {
    return this.toString();
  }
}

/**
 * One stage's provider configuration, frozen.
 *
 * `util.inspect` (so `console.log`), `toString` and `JSON.stringify` never show a
 * plaintext key; read `apiKey` to use it.
 */
export class StageConfig implements StageConfigFields {
  readonly stageType: StageType;
  readonly providerKind: ProviderKind;
  readonly apiKey: string;
  readonly model: string;
  readonly revision: number;
  readonly status: ConfigStatus;
  readonly source: ConfigSource;
  readonly options: Readonly<Record<string, string>>;
  readonly statusReason: string;
  readonly apiKeyMasked: boolean;
  readonly apiKeyFingerprint: string;
  readonly updatedAt: Date | undefined;
  readonly modelsCacheUpdatedAt: Date | undefined;
  /** Routes to use, in order, when the primary fails (empty from an older server). */
  readonly fallbacks: readonly Route[];

  /** Builds a frozen config; the client does this from the server's answers. */
  constructor(fields: StageConfigFields) {
    this.stageType = fields.stageType;
    this.providerKind = fields.providerKind;
    this.apiKey = fields.apiKey;
    this.model = fields.model;
    this.revision = fields.revision;
    this.status = fields.status;
    this.source = fields.source;
    this.options = Object.freeze({ ...fields.options });
    this.statusReason = fields.statusReason;
    this.apiKeyMasked = fields.apiKeyMasked;
    this.apiKeyFingerprint = fields.apiKeyFingerprint;
    this.updatedAt = fields.updatedAt;
    this.modelsCacheUpdatedAt = fields.modelsCacheUpdatedAt;
    this.fallbacks = Object.freeze([...(fields.fallbacks ?? [])]);
    Object.freeze(this);
  }

  /** The fields with the key masked, for logs. */
  toJSON(): Record<string, unknown> {
    return {
      stageType: this.stageType,
      providerKind: this.providerKind,
      apiKey: this.apiKeyMasked ? this.apiKey : maskKey(this.apiKey),
      model: this.model,
      revision: this.revision,
      status: this.status,
      source: this.source,
      options: this.options,
      statusReason: this.statusReason,
      apiKeyMasked: this.apiKeyMasked,
      apiKeyFingerprint: this.apiKeyFingerprint,
      updatedAt: this.updatedAt,
      modelsCacheUpdatedAt: this.modelsCacheUpdatedAt,
      fallbacks: this.fallbacks.map((route) => route.toJSON()),
    };
  }

  /** A one-line description with the key masked. */
  toString(): string {
    const key = this.apiKeyMasked ? this.apiKey : maskKey(this.apiKey);
    return (
      `StageConfig(stageType=${this.stageType}, providerKind=${this.providerKind}, ` +
      `model=${JSON.stringify(this.model)}, revision=${this.revision}, status=${this.status}, ` +
      `source=${this.source}, apiKey=${JSON.stringify(key)}` +
      (this.fallbacks.length > 0 ? `, fallbacks=${this.fallbacks.length})` : ")")
    );
  }

  /** What `console.log` shows: never the plaintext key. */
  [inspect.custom](): string {
    return this.toString();
  }
}

/** What `UpdateConfig` stores; omitted fields keep (or reuse) what the server has. */
export interface UpdateConfigRequest {
  readonly stage: StageType;
  readonly provider: ProviderKind;
  /** Omit to keep the stored key (same provider) or reuse the newest key saved for the provider. */
  readonly apiKey?: string;
  /** Omit to keep the stored model when the provider still offers it, else the first. */
  readonly model?: string;
  /** Provider options; empty keeps the stored ones when the provider is unchanged. */
  readonly options?: Readonly<Record<string, string>>;
  /** Write only if the stage is still at this revision (0: must not exist yet); else {@link ConflictError}. */
  readonly expectedRevision?: number;
  /** Run every check, the provider's included, and write nothing. */
  readonly validateOnly?: boolean;
  /** Free text kept in the history next to the change. */
  readonly comment?: string;
}

/** The answer to `UpdateConfig`. */
export interface UpdateConfigResult {
  /** The stored (or, with `validateOnly`, the would-be) config, key masked. */
  readonly config: StageConfig;
  /** The models the provider offers for this key. */
  readonly models: readonly string[];
  /** False with `validateOnly`. */
  readonly written: boolean;
}

/** A stage's cached model list (`ListModels`). */
export interface ModelList {
  readonly models: readonly string[];
  /** When the list was fetched from the provider; undefined if never. */
  readonly updatedAt: Date | undefined;
  readonly selectedModel: string;
  readonly providerKind: ProviderKind | undefined;
  readonly status: ConfigStatus;
  readonly statusReason: string;
}
