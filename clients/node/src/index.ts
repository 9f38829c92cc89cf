/**
 * `@stageconfig/client`: the Node.js client of the stageconfig service.
 *
 * {@link StageConfigClient} makes the unary calls and starts {@link ConfigWatcher}s,
 * hot in-memory copies kept current by the WatchConfig stream. The domain types and the
 * error tree are public here; the generated protobuf code is an implementation detail
 * (import it from `./gen/...` only if you need a message this client does not wrap).
 */

export type { BackoffOptions } from "./backoff.js";
export { StageConfigClient, type CallSettings, type ClientOptions } from "./client.js";
export {
  ClientClosedError,
  ConflictError,
  DeadlineExceededError,
  InvalidArgumentError,
  KeyRejectedError,
  NotFoundError,
  NotReadyError,
  PermissionDeniedError,
  RPCError,
  StageConfigError,
  UnauthenticatedError,
  UnavailableError,
  type StatusCode,
} from "./errors.js";
export type { OutcomeDetails } from "./outcomes.js";
export type { ConnectionOptions, TlsOptions } from "./transport.js";
export {
  PROVIDER_KINDS,
  Route,
  STAGE_TYPES,
  StageConfig,
  type ChangeReason,
  type ConfigSource,
  type ConfigStatus,
  type ModelList,
  type ProviderKind,
  type RouteFields,
  type StageConfigFields,
  type StageType,
  type UpdateConfigRequest,
  type UpdateConfigResult,
} from "./types.js";
export {
  ConfigWatcher,
  type ChangeListener,
  type ConfigChangeEvent,
  type ConfigSnapshot,
  type StateListener,
  type WatchOptions,
  type WatcherState,
} from "./watcher.js";
