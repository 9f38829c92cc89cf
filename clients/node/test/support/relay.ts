/**
 * A gRPC relay in front of the real server that can lose ReportStatus *answers*: a real
 * Connect server on a free loopback port that forwards WatchConfig and ReportStatus to
 * the upstream server, and for the next {@link LossyRelay.loseAnswers} reports carrying
 * task outcomes throws UNAVAILABLE after the upstream has counted the report — the case of a reply lost on
 * the way back, which the client must retry with the same sequence. Every other method
 * is UNIMPLEMENTED.
 */

import { createServer, type Http2Server, type ServerHttp2Session } from "node:http2";

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";

import { StageConfigService } from "../../src/gen/stageconfig/v1/stage_config_pb.js";

/** One report the upstream answered, as relayed. */
export interface RelayedAnswer {
  readonly sequence: bigint;
  /** The upstream had counted this (client id, sequence) already. */
  readonly duplicate: boolean;
  /** The answer was lost on purpose (the client saw UNAVAILABLE). */
  readonly lost: boolean;
  /** Tasks the report counted (all stages, all revisions). */
  readonly tasks: bigint;
}

/** A running relay. */
export class LossyRelay {
  /** How many of the next answers to reports with task outcomes to lose. */
  loseAnswers = 0;
  /** Every report the upstream answered, in order. */
  readonly answers: RelayedAnswer[] = [];
  private readonly sessions = new Set<ServerHttp2Session>();
  private server: Http2Server | undefined;
  private port = 0;

  private constructor() {}

  /** `127.0.0.1:<port>`. */
  get target(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Listens on a free loopback port, relaying to `upstreamTarget` (`host:port`). */
  static async start(upstreamTarget: string): Promise<LossyRelay> {
    const upstream = createClient(StageConfigService, createGrpcTransport({ baseUrl: `http://${upstreamTarget}` }));
    const relay = new LossyRelay();
    const handler = connectNodeAdapter({
      routes: (router) =>
        router.service(StageConfigService, {
          watchConfig: (request, context) => upstream.watchConfig(request, { signal: context.signal }),
          reportStatus: async (request) => {
            const answer = await upstream.reportStatus(request);
            let tasks = 0n;
            for (const stage of request.stages) {
              for (const o of stage.outcomes) tasks += o.succeeded + o.failed + o.retried;
            }
            const lost = tasks > 0n && relay.loseAnswers > 0;
            relay.answers.push({ sequence: request.sequence, duplicate: answer.duplicate, lost, tasks });
            if (lost) {
              relay.loseAnswers -= 1;
              throw new ConnectError("the answer was lost", Code.Unavailable);
            }
            return answer;
          },
        }),
    });
    const server = createServer(handler);
    server.on("session", (session) => {
      relay.sessions.add(session);
      session.once("close", () => relay.sessions.delete(session));
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const address = server.address();
    if (address === null || typeof address === "string") throw new Error("the relay has no TCP address");
    relay.server = server;
    relay.port = address.port;
    return relay;
  }

  /** Drops every connection and stops listening. */
  async close(): Promise<void> {
    for (const session of this.sessions) session.destroy();
    await new Promise<void>((resolve) => (this.server === undefined ? resolve() : this.server.close(() => resolve())));
  }
}
