/**
 * A stand-in for a server newer than this client: a real gRPC server (Connect over
 * plaintext HTTP/2 on a free loopback port, built from the generated descriptors in
 * src/gen) that sends exactly what the test scripts, enum values this client does not
 * know included. The Python server cannot do that: it only sends values it knows.
 *
 * WatchConfig streams get {@link NewerServer.opening} first, then whatever the test
 * {@link NewerServer.send}s, until {@link NewerServer.endStreams}. GetActiveConfig and
 * ListModels answer with what the test sets; ReportStatus records every report (and
 * fails the next {@link NewerServer.failReports} with UNAVAILABLE, and refuses the next
 * {@link NewerServer.refuseOutcomeReports} that carry task outcomes with
 * PERMISSION_DENIED, for good); every other method
 * is UNIMPLEMENTED.
 */

import { createServer, type Http2Server, type ServerHttp2Session } from "node:http2";

import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";

import {
  StageConfigService,
  type ListModelsResponseSchema,
  type ReportStatusRequest,
  type StageConfigSchema,
  type WatchConfigRequest,
  type WatchConfigResponseSchema,
} from "../../src/gen/stageconfig/v1/stage_config_pb.js";

/** One WatchConfig answer, as the test writes it. */
export type WatchMessage = MessageInitShape<typeof WatchConfigResponseSchema>;
/** A StageConfig message, as the test writes it. */
export type ConfigMessage = MessageInitShape<typeof StageConfigSchema>;

/** The messages still to send on one open WatchConfig stream. */
class OpenStream {
  private readonly queue: WatchMessage[] = [];
  private wake: (() => void) | undefined;
  private ended = false;

  push(message: WatchMessage): void {
    this.queue.push(message);
    this.wake?.();
  }

  end(): void {
    this.ended = true;
    this.wake?.();
  }

  /** The queued messages as they come, until ended (or the call is cancelled). */
  async *messages(signal: AbortSignal): AsyncGenerator<WatchMessage> {
    while (!signal.aborted) {
      const next = this.queue.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.ended) return;
      let onAbort = (): void => {};
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        onAbort = resolve;
        signal.addEventListener("abort", onAbort, { once: true });
      });
      signal.removeEventListener("abort", onAbort);
      this.wake = undefined;
    }
  }
}

/** A running newer server. */
export class NewerServer {
  /** Every WatchConfig request, in the order they arrived. */
  readonly watchRequests: WatchConfigRequest[] = [];
  /** What a new WatchConfig stream is sent first (a snapshot, say). */
  opening: (request: WatchConfigRequest) => WatchMessage[] = () => [];
  /** GetActiveConfig's answer. */
  activeConfig: ConfigMessage | undefined;
  /** ListModels' answer. */
  modelList: MessageInitShape<typeof ListModelsResponseSchema> = {};
  /** Every ReportStatus request, in the order they arrived (failed ones included). */
  readonly reports: ReportStatusRequest[] = [];
  /** How many of the next reports to fail with UNAVAILABLE. */
  failReports = 0;
  /** How many of the next reports with task outcomes to refuse with PERMISSION_DENIED. */
  refuseOutcomeReports = 0;

  private readonly streams = new Set<OpenStream>();
  private readonly watchListeners = new Set<() => void>();
  private readonly sessions = new Set<ServerHttp2Session>();
  private server: Http2Server | undefined;
  private port = 0;

  private constructor() {}

  /** `127.0.0.1:<port>`. */
  get target(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Listens on a free loopback port. */
  static async start(): Promise<NewerServer> {
    const newer = new NewerServer();
    const handler = connectNodeAdapter({
      routes: (router) =>
        router.service(StageConfigService, {
          getActiveConfig: () => ({ config: newer.activeConfig }),
          listModels: () => newer.modelList,
          watchConfig: (request, context) => newer.watch(request, context.signal),
          reportStatus: (request) => {
            newer.reports.push(request);
            if (newer.failReports > 0) {
              newer.failReports -= 1;
              throw new ConnectError("away", Code.Unavailable);
            }
            if (newer.refuseOutcomeReports > 0 && request.stages.some((stage) => stage.outcomes.length > 0)) {
              newer.refuseOutcomeReports -= 1;
              throw new ConnectError("no worker role", Code.PermissionDenied);
            }
            return { duplicate: false };
          },
        }),
    });
    const server = createServer(handler);
    server.on("session", (session) => {
      newer.sessions.add(session);
      session.once("close", () => newer.sessions.delete(session));
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const address = server.address();
    if (address === null || typeof address === "string") throw new Error("the newer server has no TCP address");
    newer.server = server;
    newer.port = address.port;
    return newer;
  }

  /** Sends `messages` on every open WatchConfig stream. */
  send(...messages: WatchMessage[]): void {
    for (const stream of this.streams) for (const message of messages) stream.push(message);
  }

  /** Ends every open WatchConfig stream cleanly, as a server shutting down would. */
  endStreams(): void {
    for (const stream of this.streams) stream.end();
  }

  /** Resolves with the `count`-th WatchConfig request once it arrived; rejects after `timeoutMs`. */
  waitForWatch(count: number, timeoutMs: number): Promise<WatchConfigRequest> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const request = this.watchRequests[count - 1];
        if (request === undefined) return false;
        clearTimeout(timer);
        this.watchListeners.delete(listener);
        resolve(request);
        return true;
      };
      const listener = (): void => void check();
      const timer = setTimeout(() => {
        this.watchListeners.delete(listener);
        reject(new Error(`WatchConfig call ${count} did not arrive within ${timeoutMs} ms (${this.watchRequests.length} did)`));
      }, timeoutMs);
      if (!check()) this.watchListeners.add(listener);
    });
  }

  /** Ends the streams, drops every connection and stops listening. */
  async close(): Promise<void> {
    this.endStreams();
    for (const session of this.sessions) session.destroy();
    await new Promise<void>((resolve) => (this.server === undefined ? resolve() : this.server.close(() => resolve())));
  }

  private async *watch(request: WatchConfigRequest, signal: AbortSignal): AsyncGenerator<WatchMessage> {
    const stream = new OpenStream();
    this.streams.add(stream); // before anything is sent: a send() from now on reaches it
    this.watchRequests.push(request);
    for (const listener of [...this.watchListeners]) listener();
    try {
      yield* this.opening(request);
      yield* stream.messages(signal);
    } finally {
      this.streams.delete(stream);
    }
  }
}
