/**
 * A TCP proxy in front of the real server that the test can cut, restore or freeze: a
 * way to drop a client's connection (and keep it from reconnecting), or silence it, while
 * the server stays up and accepts changes from elsewhere.
 */

import { createConnection, createServer, type Server, type Socket } from "node:net";

/** A running proxy to `127.0.0.1:<upstreamPort>`. */
export class CuttableProxy {
  private readonly sockets = new Set<Socket>();
  private readonly pairs = new Set<{ client: Socket; upstream: Socket }>();
  private cut = false;

  private constructor(
    private readonly server: Server,
    /** The port clients connect to. */
    readonly port: number,
  ) {}

  /** `127.0.0.1:<port>`. */
  get target(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Listens on a free loopback port and forwards to the upstream port. */
  static start(upstreamPort: number): Promise<CuttableProxy> {
    let proxy: CuttableProxy | undefined;
    const server = createServer((client) => {
      if (proxy === undefined || proxy.cut) {
        client.destroy();
        return;
      }
      const upstream = createConnection({ host: "127.0.0.1", port: upstreamPort });
      const pair = { client, upstream };
      for (const socket of [client, upstream]) {
        proxy.sockets.add(socket);
        socket.on("error", () => undefined);
        socket.on("close", () => {
          proxy?.sockets.delete(socket);
          proxy?.pairs.delete(pair);
          client.destroy();
          upstream.destroy();
        });
      }
      proxy.pairs.add(pair);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        const address = server.address();
        if (address === null || typeof address === "string") {
          reject(new Error("proxy has no TCP address"));
          return;
        }
        proxy = new CuttableProxy(server, address.port);
        resolve(proxy);
      });
    });
  }

  /** Drops every connection and refuses new ones until {@link restore}. */
  drop(): void {
    this.cut = true;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  /**
   * Silences every open connection without closing it (a half-open connection: no data,
   * no FIN, no RST); new connections are still forwarded.
   */
  freeze(): void {
    for (const { client, upstream } of this.pairs) {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
  }

  /** Forwards new connections again. */
  restore(): void {
    this.cut = false;
  }

  /** Stops listening and drops every connection. */
  close(): Promise<void> {
    this.drop();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
