/**
 * Proto ↔ client types, in one place. Generated enum members carry the names without
 * their prefix (`StageType.POEM`), which are exactly the client's string values.
 */

import { create } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";

import * as pb from "./gen/stageconfig/v1/stage_config_pb.js";
import {
  PROVIDER_KINDS,
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

/** Client value of a proto status. */
export function statusFromPb(value: pb.ConfigStatus): ConfigStatus {
  return nameOf(pb.ConfigStatus, value) as ConfigStatus;
}

/** Client value of a proto change reason. */
export function reasonFromPb(value: pb.ChangeReason): ChangeReason {
  return nameOf(pb.ChangeReason, value) as ChangeReason;
}

function dateFromPb(ts: Timestamp | undefined): Date | undefined {
  return ts === undefined ? undefined : timestampDate(ts);
}

/**
 * A frozen StageConfig from its message, or undefined when the message names no known
 * stage or provider (a config this client cannot represent is skipped, not guessed).
 */
export function configFromPb(message: pb.StageConfig): StageConfig | undefined {
  const stageType = stageFromPb(message.stageType);
  const providerKind = providerFromPb(message.providerKind);
  if (stageType === undefined || providerKind === undefined) {
    return undefined;
  }
  return new StageConfig({
    stageType,
    providerKind,
    apiKey: message.apiKey,
    model: message.model,
    revision: Number(message.revision),
    status: statusFromPb(message.status),
    source: nameOf(pb.ConfigSource, message.source) as ConfigSource,
    options: { ...message.options },
    statusReason: message.statusReason,
    apiKeyMasked: message.apiKeyMasked,
    apiKeyFingerprint: message.apiKeyFingerprint,
    updatedAt: dateFromPb(message.updatedAt),
    modelsCacheUpdatedAt: dateFromPb(message.modelsCacheUpdatedAt),
  });
}

/** Like {@link configFromPb} for an answer that must hold a config. */
export function requiredConfigFromPb(message: pb.StageConfig | undefined): StageConfig {
  const config = message === undefined ? undefined : configFromPb(message);
  if (config === undefined) {
    throw new TypeError("the server answered without a usable config (is this client older than the server?)");
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
