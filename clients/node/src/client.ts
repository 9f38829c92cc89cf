/** The typed client of `stageconfig.v1.StageConfigService`. */

import { createClient, type CallOptions, type Client } from "@connectrpc/connect";

import {
  modelListFromPb,
  requiredConfigFromPb,
  stageToPb,
  updateRequestToPb,
  updateResultFromPb,
} from "./convert.js";
import { ClientClosedError, translateError } from "./errors.js";
import { StageConfigService } from "./gen/stageconfig/v1/stage_config_pb.js";
import { createTransport, type ConnectionOptions, type OwnedTransport } from "./transport.js";
import type { ModelList, StageConfig, StageType, UpdateConfigRequest, UpdateConfigResult } from "./types.js";
import { ConfigWatcher, type WatchOptions } from "./watcher.js";

/** Settings of a {@link StageConfigClient}. */
export interface ClientOptions extends ConnectionOptions {
  /** Deadline of each unary call in ms, unless the call says otherwise. Default 10 000. */
  readonly timeoutMs?: number;
}

/** Per-call settings of a unary call. */
export interface CallSettings {
  /** Deadline of this call in ms. */
  readonly timeoutMs?: number;
  /** Aborts the call (it then fails with a CANCELLED {@link RPCError}). */
  readonly signal?: AbortSignal;
}

/**
 * Calls the stageconfig server over gRPC (HTTP/2) and starts watchers.
 *
 * ```ts
 * const client = new StageConfigClient({ target: "127.0.0.1:50051", token: process.env.STAGECONFIG_TOKEN });
 * const voice = await client.getActiveConfig("VOICE");
 * const watcher = client.watchConfig({ stages: ["POEM"] });
 * await watcher.waitReady(5_000);
 * watcher.get("POEM")?.model;
 * await client.close();
 * ```
 *
 * Every failure is a {@link StageConfigError}; see `errors.ts` for the tree.
 */
export class StageConfigClient {
  private readonly owned: OwnedTransport;
  private readonly rpc: Client<typeof StageConfigService>;
  private readonly timeoutMs: number;
  private readonly watchers = new Set<ConfigWatcher>();
  private closed = false;

  constructor(options: ClientOptions) {
    this.owned = createTransport(options);
    this.rpc = createClient(StageConfigService, this.owned.transport);
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  /** A stage's active config with its plaintext key (worker role). */
  async getActiveConfig(stage: StageType, settings: CallSettings = {}): Promise<StageConfig> {
    const response = await this.call(() =>
      this.rpc.getActiveConfig({ stageType: stageToPb(stage) }, this.callOptions(settings)),
    );
    return requiredConfigFromPb(response.config);
  }

  /** Validates, verifies with the provider and stores a stage's config (admin role). */
  async updateConfig(request: UpdateConfigRequest, settings: CallSettings = {}): Promise<UpdateConfigResult> {
    const message = updateRequestToPb(request);
    const response = await this.call(() => this.rpc.updateConfig(message, this.callOptions(settings)));
    return updateResultFromPb(response);
  }

  /** A stage's cached model list; `refresh` asks the provider now. */
  async listModels(
    stage: StageType,
    options: { readonly refresh?: boolean } & CallSettings = {},
  ): Promise<ModelList> {
    const response = await this.call(() =>
      this.rpc.listModels(
        { stageType: stageToPb(stage), refresh: options.refresh ?? false },
        this.callOptions(options),
      ),
    );
    return modelListFromPb(response);
  }

  /** Starts a {@link ConfigWatcher}: a hot, self-healing copy of the watched stages. */
  watchConfig(options: WatchOptions = {}): ConfigWatcher {
    this.ensureOpen();
    const watcher = new ConfigWatcher(this.rpc, options, () => this.owned.resetConnection());
    this.watchers.add(watcher);
    watcher.onStateChange((state) => {
      if (state === "closed") this.watchers.delete(watcher);
    });
    return watcher;
  }

  /** Closes every watcher started here, then the connection. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.watchers].map((watcher) => watcher.close()));
    this.owned.close();
  }

  private ensureOpen(): void {
    if (this.closed) throw new ClientClosedError("the client is closed");
  }

  private callOptions(settings: CallSettings): CallOptions {
    return {
      timeoutMs: settings.timeoutMs ?? this.timeoutMs,
      ...(settings.signal !== undefined && { signal: settings.signal }),
    };
  }

  /** Runs one call, translating every failure in the one place that does so. */
  private async call<T>(invoke: () => Promise<T>): Promise<T> {
    this.ensureOpen();
    try {
      return await invoke();
    } catch (e) {
      throw translateError(e);
    }
  }
}
