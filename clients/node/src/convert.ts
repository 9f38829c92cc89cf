/**
 * Proto ↔ client types, in one place. Generated enum members carry the names without
 * their prefix (`StageType.POEM`), which are exactly the client's string values.
 *
 * A newer server may send enum values this client does not know (protobuf-es keeps an
 * unknown open-enum value as its number). Statuses, sources and reasons then read as
 * UNSPECIFIED; a config whose stage or provider kind is unknown cannot be represented
 * and comes back as an {@link UnrepresentableConfig}, which the watcher turns into "keep
 * this stage's last config, warn once" — never a broken stream.
 */

import { create } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";

import * as pb from "./gen/stageconfig/v1/stage_config_pb.js";
import {
  CHANGE_REASONS,
  CONFIG_SOURCES,
  CONFIG_STATUSES,
  PROVIDER_KINDS,
  Route,
  STAGE_TYPES,
  StageConfig,
  type ChangeReason,
  type ConfigSource,
  type ConfigStatus,
  type ModelList,
  type ProviderKind,
  type StageType,
  type UpdateConfigRequest,
  type UpdateConfigResult,
} from "./types.js";

function nameOf<E extends Record<string, string | number>>(
  enumObject: E,
  value: number,
): string {
  const name = (enumObject as Record<number, string | undefined>)[value];
  return name ?? "UNSPECIFIED";
}

/** The client's name for `value`, or UNSPECIFIED for a value this client does not list. */
function knownOrUnspecified<T extends string>(
  enumObject: Record<string, string | number>,
  known: readonly T[],
  value: number,
): T | "UNSPECIFIED" {
  const name = nameOf(enumObject, value);
  return (known as readonly string[]).includes(name) ? (name as T) : "UNSPECIFIED";
}

/**
 * A config message this client cannot represent: its stage or provider kind is a value
 * this client does not know (a newer server's), or UNSPECIFIED.
 */
export class UnrepresentableConfig {
  /**
   * @param stage The stage the config belongs to; undefined when the stage itself is the unknown value.
   * @param field The field holding the value this client does not know.
   * @param value That field's number on the wire.
   * @param revision The revision at which the config was written.
   */
  constructor(
    readonly stage: StageType | undefined,
    readonly field: "stageType" | "providerKind",
    readonly value: number,
    readonly revision: number,
  ) {
    Object.freeze(this);
  }

  /** E.g. `the VOICE config at revision 6 has providerKind=99, a value this client does not know`. */
  toString(): string {
    const where = this.stage === undefined ? "a config" : `the ${this.stage} config`;
    return `${where} at revision ${this.revision} has ${this.field}=${this.value}, a value this client does not know`;
  }
}

function checked<T extends string>(allowed: readonly T[], value: string, what: string): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new TypeError(`unknown ${what} ${JSON.stringify(value)}; expected one of ${allowed.join(", ")}`);
  }
  return value as T;
}

/** Proto value of a stage; throws TypeError for a name that is not a stage. */
export function stageToPb(stage: StageType): pb.StageType {
  return pb.StageType[checked(STAGE_TYPES, stage, "stage")];
}

/** Proto value of a provider kind; throws TypeError for an unknown name. */
export function providerToPb(provider: ProviderKind): pb.ProviderKind {
  return pb.ProviderKind[checked(PROVIDER_KINDS, provider, "provider kind")];
}

/** Client value of a proto stage, undefined for UNSPECIFIED or a value newer than this client. */
export function stageFromPb(value: pb.StageType): StageType | undefined {
  const name = nameOf(pb.StageType, value);
  return (STAGE_TYPES as readonly string[]).includes(name) ? (name as StageType) : undefined;
}

/** Client value of a proto provider kind, undefined for UNSPECIFIED or an unknown value. */
export function providerFromPb(value: pb.ProviderKind): ProviderKind | undefined {
  const name = nameOf(pb.ProviderKind, value);
  return (PROVIDER_KINDS as readonly string[]).includes(name) ? (name as ProviderKind) : undefined;
}

/** Client value of a proto status (UNSPECIFIED for one this client does not know). */
export function statusFromPb(value: pb.ConfigStatus): ConfigStatus {
  return knownOrUnspecified(pb.ConfigStatus, CONFIG_STATUSES, value);
}

/** Client value of a proto config source (UNSPECIFIED for one this client does not know). */
export function sourceFromPb(value: pb.ConfigSource): ConfigSource {
  return knownOrUnspecified(pb.ConfigSource, CONFIG_SOURCES, value);
}

/** Client value of a proto change reason (UNSPECIFIED for one this client does not know). */
export function reasonFromPb(value: pb.ChangeReason): ChangeReason {
  return knownOrUnspecified(pb.ChangeReason, CHANGE_REASONS, value);
}

function dateFromPb(ts: Timestamp | undefined): Date | undefined {
  return ts === undefined ? undefined : timestampDate(ts);
}

/**
 * A frozen StageConfig from its message, or an {@link UnrepresentableConfig} when the
 * message names a stage or provider kind this client does not know (reported, not guessed).
 */
export function configFromPb(message: pb.StageConfig): StageConfig | UnrepresentableConfig {
  const revision = Number(message.revision);
  const stageType = stageFromPb(message.stageType);
  if (stageType === undefined) {
    return new UnrepresentableConfig(undefined, "stageType", message.stageType, revision);
  }
  const providerKind = providerFromPb(message.providerKind);
  if (providerKind === undefined) {
    return new UnrepresentableConfig(stageType, "providerKind", message.providerKind, revision);
  }
  return new StageConfig({
    stageType,
    providerKind,
    apiKey: message.apiKey,
    model: message.model,
    revision,
    status: statusFromPb(message.status),
    source: sourceFromPb(message.source),
    options: { ...message.options },
    statusReason: message.statusReason,
    apiKeyMasked: message.apiKeyMasked,
    apiKeyFingerprint: message.apiKeyFingerprint,
    updatedAt: dateFromPb(message.updatedAt),
    modelsCacheUpdatedAt: dateFromPb(message.modelsCacheUpdatedAt),
    fallbacks: fallbacksFromPb(message.fallbacks),
  });
}

/**
 * The fallback routes of a config message. A route whose provider kind this client does
 * not know (a newer server's) is skipped; the others keep the server's numbering.
 */
export function fallbacksFromPb(messages: readonly pb.Route[]): Route[] {
  const routes: Route[] = [];
  messages.forEach((message, position) => {
    const providerKind = providerFromPb(message.providerKind);
    if (providerKind === undefined) {
      return;
    }
    routes.push(
      new Route({
        providerKind,
        apiKey: message.apiKey,
        model: message.model,
        options: { ...message.options },
        status: statusFromPb(message.status),
        statusReason: message.statusReason,
        apiKeyMasked: message.apiKeyMasked,
        apiKeyFingerprint: message.apiKeyFingerprint,
        index: position + 1,
      }),
    );
  });
  return routes;
}

/** Like {@link configFromPb} for an answer that must hold a config. */
export function requiredConfigFromPb(message: pb.StageConfig | undefined): StageConfig {
  if (message === undefined) {
    throw new TypeError("the server answered without a usable config (is this client older than the server?)");
  }
  const config = configFromPb(message);
  if (config instanceof UnrepresentableConfig) {
    throw new TypeError(`the server answered with ${config} (is this client older than the server?)`);
  }
  return config;
}

/** The UpdateConfig request message. */
export function updateRequestToPb(request: UpdateConfigRequest): pb.UpdateConfigRequest {
  return create(pb.UpdateConfigRequestSchema, {
    stageType: stageToPb(request.stage),
    providerKind: providerToPb(request.provider),
    ...(request.apiKey !== undefined && { apiKey: request.apiKey }),
    ...(request.model !== undefined && { model: request.model }),
    ...(request.options !== undefined && { options: { ...request.options } }),
    ...(request.expectedRevision !== undefined && {
      expectedRevision: BigInt(request.expectedRevision),
    }),
    validateOnly: request.validateOnly ?? false,
    comment: request.comment ?? "",
  });
}

/** The client form of an UpdateConfig answer. */
export function updateResultFromPb(response: pb.UpdateConfigResponse): UpdateConfigResult {
  return {
    config: requiredConfigFromPb(response.config),
    models: Object.freeze([...response.models]),
    written: response.written,
  };
}

/** The client form of a ListModels answer. */
export function modelListFromPb(response: pb.ListModelsResponse): ModelList {
  return {
    models: Object.freeze([...response.models]),
    updatedAt: dateFromPb(response.updatedAt),
    selectedModel: response.selectedModel,
    providerKind: providerFromPb(response.providerKind),
    status: statusFromPb(response.status),
    statusReason: response.statusReason,
  };
}
