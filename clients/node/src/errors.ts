/**
 * The client's one error tree. A `ConnectError` never reaches user code: every status
 * is translated here, in one table, to a typed error (the original is kept as `cause`).
 *
 *     StageConfigError
 *       NotReadyError            no config arrived within waitReady's timeout
 *       ClientClosedError        the client (or watcher) was closed
 *       RPCError                 the server answered with a status (`.code`)
 *         InvalidArgumentError   a request field is wrong (`.field`)
 *         NotFoundError
 *         ConflictError          expectedRevision is stale (`.currentRevision`)
 *         KeyRejectedError       the provider refused the key; nothing changed
 *         PermissionDeniedError
 *         UnauthenticatedError
 *         UnavailableError       server or database unreachable; retry
 *         DeadlineExceededError
 *
 * Mirrors `stageconfig.errors` of the Python client.
 */

import { ConnectError, type Code } from "@connectrpc/connect";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

/** gRPC status code names, so user code never imports Connect. */
export type StatusCode =
  | "OK"
  | "CANCELLED"
  | "UNKNOWN"
  | "INVALID_ARGUMENT"
  | "DEADLINE_EXCEEDED"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "PERMISSION_DENIED"
  | "RESOURCE_EXHAUSTED"
  | "FAILED_PRECONDITION"
  | "ABORTED"
  | "OUT_OF_RANGE"
  | "UNIMPLEMENTED"
  | "INTERNAL"
  | "UNAVAILABLE"
  | "DATA_LOSS"
  | "UNAUTHENTICATED";

const STATUS_NAMES: readonly StatusCode[] = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

/** Root of every error the client throws. */
export class StageConfigError extends Error {
  override name = "StageConfigError";
}

/** The client has no config to serve yet. */
export class NotReadyError extends StageConfigError {
  override name = "NotReadyError";
}

/** The client or watcher was closed. */
export class ClientClosedError extends StageConfigError {
  override name = "ClientClosedError";
}

/** The server answered a call with a non-OK status. */
export class RPCError extends StageConfigError {
  override name = "RPCError";
  /** The gRPC status code. */
  readonly code: StatusCode;
  /** The server's message, without the code in front. */
  readonly rawMessage: string;

  constructor(code: StatusCode, message: string, options?: ErrorOptions) {
    super(`${code}: ${message}`, options);
    this.code = code;
    this.rawMessage = message;
  }
}

/** A request field is wrong; `field` names it (from the `google.rpc.BadRequest` detail). */
export class InvalidArgumentError extends RPCError {
  override name = "InvalidArgumentError";
  /** The offending request field, e.g. `provider_kind`; empty when the server named none. */
  readonly field: string;
  /** What is wrong with the field, in the server's words. */
  readonly description: string;

  constructor(code: StatusCode, message: string, field: string, description: string, options?: ErrorOptions) {
    super(code, message, options);
    this.field = field;
    this.description = description;
  }
}

/** Nothing is stored (and no fallback exists) for what was asked. */
export class NotFoundError extends RPCError {
  override name = "NotFoundError";
}

/** An optimistic write found another revision; reload and retry. */
export class ConflictError extends RPCError {
  override name = "ConflictError";
  /** The stage's revision on the server, when it said. */
  readonly currentRevision: number | undefined;

  constructor(code: StatusCode, message: string, currentRevision: number | undefined, options?: ErrorOptions) {
    super(code, message, options);
    this.currentRevision = currentRevision;
  }
}

/** The provider refused the key; the stored config is unchanged. */
export class KeyRejectedError extends RPCError {
  override name = "KeyRejectedError";
}

/** The token's role may not make this call. */
export class PermissionDeniedError extends RPCError {
  override name = "PermissionDeniedError";
}

/** No token, or one the server does not know. */
export class UnauthenticatedError extends RPCError {
  override name = "UnauthenticatedError";
}

/** The server (or its database) cannot be reached now; retry later. */
export class UnavailableError extends RPCError {
  override name = "UnavailableError";
}

/** The call did not finish within its deadline. */
export class DeadlineExceededError extends RPCError {
  override name = "DeadlineExceededError";
}

type PlainRPCError = new (code: StatusCode, message: string, options?: ErrorOptions) => RPCError;

/** The one table from status codes to errors; anything else is a plain RPCError. */
const ERROR_BY_CODE: ReadonlyMap<StatusCode, PlainRPCError> = new Map<StatusCode, PlainRPCError>([
  ["NOT_FOUND", NotFoundError],
  ["FAILED_PRECONDITION", KeyRejectedError],
  ["PERMISSION_DENIED", PermissionDeniedError],
  ["UNAUTHENTICATED", UnauthenticatedError],
  ["UNAVAILABLE", UnavailableError],
  ["DEADLINE_EXCEEDED", DeadlineExceededError],
]);

interface FieldViolation {
  field: string;
  description: string;
}

/** Decodes the first field violation of a `google.rpc.BadRequest`. */
function firstFieldViolation(bytes: Uint8Array): FieldViolation | undefined {
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [fieldNo, wireType] = reader.tag();
    if (fieldNo === 1 && wireType === WireType.LengthDelimited) {
      // BadRequest.field_violations: FieldViolation { string field = 1; string description = 2; }
      const violation = new BinaryReader(reader.bytes());
      const result: FieldViolation = { field: "", description: "" };
      while (violation.pos < violation.len) {
        const [n, t] = violation.tag();
        if (n === 1 && t === WireType.LengthDelimited) result.field = violation.string();
        else if (n === 2 && t === WireType.LengthDelimited) result.description = violation.string();
        else violation.skip(t, n);
      }
      return result;
    }
    reader.skip(wireType, fieldNo);
  }
  return undefined;
}

/** Decodes `google.rpc.ErrorInfo.metadata` (map<string, string> = 3). */
function errorInfoMetadata(bytes: Uint8Array): Map<string, string> {
  const metadata = new Map<string, string>();
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [fieldNo, wireType] = reader.tag();
    if (fieldNo === 3 && wireType === WireType.LengthDelimited) {
      const entry = new BinaryReader(reader.bytes());
      let key = "";
      let value = "";
      while (entry.pos < entry.len) {
        const [n, t] = entry.tag();
        if (n === 1 && t === WireType.LengthDelimited) key = entry.string();
        else if (n === 2 && t === WireType.LengthDelimited) value = entry.string();
        else entry.skip(t, n);
      }
      metadata.set(key, value);
    } else {
      reader.skip(wireType, fieldNo);
    }
  }
  return metadata;
}

interface StatusDetails {
  violation: FieldViolation | undefined;
  currentRevision: number | undefined;
}

function parseDetails(error: ConnectError): StatusDetails {
  const parsed: StatusDetails = { violation: undefined, currentRevision: undefined };
  for (const detail of error.details) {
    if (!("type" in detail)) continue; // an outgoing detail: never on a received error
    try {
      if (detail.type === "google.rpc.BadRequest" && parsed.violation === undefined) {
        parsed.violation = firstFieldViolation(detail.value);
      } else if (detail.type === "google.rpc.ErrorInfo") {
        const revision = errorInfoMetadata(detail.value).get("current_revision");
        if (revision !== undefined && /^-?\d+$/.test(revision)) parsed.currentRevision = Number(revision);
      }
    } catch {
      // A malformed detail is ignored: the status code and message still hold.
    }
  }
  return parsed;
}

/** The status code name of a Connect code (they share gRPC's numbering). */
export function statusCodeOf(code: Code): StatusCode {
  return STATUS_NAMES[code] ?? "UNKNOWN";
}

/**
 * The typed error for anything a call threw: a `ConnectError` becomes the matching
 * {@link RPCError} (details parsed from its status); errors of this client pass through;
 * anything else becomes an `UNKNOWN` RPCError with the original as `cause`.
 */
export function translateError(error: unknown): StageConfigError {
  if (error instanceof StageConfigError) return error;
  const connectError = ConnectError.from(error);
  const code = statusCodeOf(connectError.code);
  const message = connectError.rawMessage;
  const options: ErrorOptions = { cause: error };
  if (code === "INVALID_ARGUMENT") {
    const { violation } = parseDetails(connectError);
    return new InvalidArgumentError(code, message, violation?.field ?? "", violation?.description ?? "", options);
  }
  if (code === "ABORTED") {
    return new ConflictError(code, message, parseDetails(connectError).currentRevision, options);
  }
  const cls = ERROR_BY_CODE.get(code) ?? RPCError;
  return new cls(code, message, options);
}
