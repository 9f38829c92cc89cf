/**
 * The gRPC transport, with the bearer token and TLS handled in one place.
 *
 * One HTTP/2 connection per client (Connect's `Http2SessionManager`), kept alive with
 * PING frames so a half-open connection is noticed, and closed by `close()` so a
 * process that is done with the client can exit.
 */

import { Code, ConnectError, type Interceptor, type Transport } from "@connectrpc/connect";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";

/** TLS settings for an `https` target. PEM strings or buffers. */
export interface TlsOptions {
  /** CA certificate(s) to trust instead of the system store (a private CA). */
  readonly ca?: string | Buffer;
  /** Client certificate, for a server that requires mutual TLS. */
  readonly cert?: string | Buffer;
  /** Private key of the client certificate. */
  readonly key?: string | Buffer;
  /** The name to verify the server certificate against, when it differs from the host. */
  readonly serverName?: string;
}

/** How to reach the server. */
export interface ConnectionOptions {
  /**
   * `host:port` (plaintext; TLS when `tls` is given) or a URL, `http://host:port` or
   * `https://host:port`.
   */
  readonly target: string;
  /** Sent as `authorization: Bearer <token>` on every call; none when undefined. */
  readonly token?: string | undefined;
  /** TLS settings; `true` uses the system trust store. */
  readonly tls?: TlsOptions | true | undefined;
  /** HTTP/2 PING interval in ms (the server accepts one per 20 s). Default 30 000. */
  readonly keepaliveMs?: number;
}

/** The base URL of a target (`host:port` gets a scheme from whether TLS is on). */
export function baseUrlOf(target: string, tls: boolean): string {
  if (/^https?:\/\//.test(target)) {
    return target.replace(/\/+$/, "");
  }
  return `${tls ? "https" : "http"}://${target}`;
}

function bearer(token: string): Interceptor {
  const value = `Bearer ${token}`;
  return (next) => (request) => {
    request.header.set("authorization", value);
    return next(request);
  };
}

/** A transport and the connection it owns. */
export interface OwnedTransport {
  readonly transport: Transport;
  /** Drops the HTTP/2 connection (calls in flight fail); the next call opens a new one. */
  resetConnection(): void;
  /** Closes the HTTP/2 connection; calls in flight fail. */
  close(): void;
}

/** Builds the transport for `options`. */
export function createTransport(options: ConnectionOptions): OwnedTransport {
  const tls = options.tls === true ? {} : options.tls;
  const baseUrl = baseUrlOf(options.target, tls !== undefined);
  if (options.token !== undefined && !/^[!-~]+$/.test(options.token)) {
    throw new TypeError("token must be printable ASCII without spaces");
  }
  const sessionManager = new Http2SessionManager(
    baseUrl,
    {
      pingIntervalMs: options.keepaliveMs ?? 30_000,
      pingTimeoutMs: 10_000,
    },
    tls === undefined
      ? {}
      : {
          ...(tls.ca !== undefined && { ca: tls.ca }),
          ...(tls.cert !== undefined && { cert: tls.cert }),
          ...(tls.key !== undefined && { key: tls.key }),
          ...(tls.serverName !== undefined && { servername: tls.serverName }),
        },
  );
  const transport = createGrpcTransport({
    baseUrl,
    sessionManager,
    interceptors: options.token === undefined ? [] : [bearer(options.token)],
  });
  const drop = (): void => sessionManager.abort(new ConnectError("connection reset by the client", Code.Unavailable));
  return { transport, resetConnection: drop, close: drop };
}
