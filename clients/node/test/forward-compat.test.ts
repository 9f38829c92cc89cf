/**
 * An older client on a newer server: the real Node client against a real gRPC server
 * (test/support/newer-server.ts) that sends enum values this client does not know. The
 * stream, the state and the other stages carry on; a stage the client cannot represent
 * keeps its last config (or stays absent) with one warning; the revision still advances.
 */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  ChangeReason,
  ConfigSource,
  ConfigStatus,
  ProviderKind,
  StageType,
  StatusCause,
} from "../src/gen/stageconfig/v1/stage_config_pb.js";
import { StageConfigClient, type ConfigChangeEvent, type ConfigWatcher, type WatcherState } from "../src/index.js";
import { UNKNOWN_VALUE_WARNING_CODE } from "../src/unknown-values.js";
import { NewerServer, type ConfigMessage, type WatchMessage } from "./support/newer-server.js";
import { waitForChange, waitForState } from "./support/server.js";

/** A value of every enum that no version of this client knows. */
const UNKNOWN: number = 99;
const DEADLINE_MS = 10_000;

function stageConfig(stageType: number, providerKind: number, revision: number, model: string): ConfigMessage {
  return {
    stageType,
    providerKind,
    apiKey: `key-for-${model}`,
    model,
    revision: BigInt(revision),
    status: ConfigStatus.ACTIVE,
    source: ConfigSource.DATABASE,
  };
}

function snapshot(revision: number, configs: ConfigMessage[]): WatchMessage {
  return { event: { case: "snapshot", value: { revision: BigInt(revision), configs } } };
}

function change(config: ConfigMessage, reason: number = ChangeReason.ADMIN_UPDATE): WatchMessage {
  const revision = config.revision ?? 0n;
  return { event: { case: "change", value: { revision, config, reason } } };
}

const HEARTBEAT: WatchMessage = { event: { case: "heartbeat", value: { headRevision: 0n } } };

/** The client's unknown-value warnings, as the process emits them. */
class WarningLog {
  readonly messages: string[] = [];
  private readonly waiters = new Set<() => void>();
  private readonly onWarning = (warning: Error & { code?: string }): void => {
    if (warning.code !== UNKNOWN_VALUE_WARNING_CODE) return;
    this.messages.push(warning.message);
    for (const waiter of [...this.waiters]) waiter();
  };

  constructor() {
    process.on("warning", this.onWarning);
  }

  /** Resolves with the `count`-th warning once it was emitted; rejects after `timeoutMs`. */
  nth(count: number, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const message = this.messages[count - 1];
        if (message === undefined) return false;
        clearTimeout(timer);
        this.waiters.delete(waiter);
        resolve(message);
        return true;
      };
      const waiter = (): void => void check();
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`warning ${count} not emitted within ${timeoutMs} ms: ${JSON.stringify(this.messages)}`));
      }, timeoutMs);
      if (!check()) this.waiters.add(waiter);
    });
  }

  dispose(): void {
    process.off("warning", this.onWarning);
  }
}

/** Resolves once `watcher` holds `revision` (an applied change no listener hears of). */
function waitForRevision(watcher: ConfigWatcher, revision: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const poll = (): void => {
      if (watcher.revision === revision) resolve();
      else if (Date.now() > deadline) reject(new Error(`revision ${watcher.revision}, not ${revision}, after ${timeoutMs} ms`));
      else setTimeout(poll, 10);
    };
    poll();
  });
}

describe("an older client on a newer server", () => {
  let server: NewerServer;
  let client: StageConfigClient;
  let warnings: WarningLog;

  before(async () => {
    server = await NewerServer.start();
    client = new StageConfigClient({ target: server.target });
    warnings = new WarningLog();
  });

  after(async () => {
    warnings?.dispose();
    await client?.close();
    await server?.close();
  });

  test("unknown enum values never break the watch; an unrepresentable stage keeps its last config", async () => {
    server.opening = () => [
      snapshot(3, [
        stageConfig(StageType.POEM, ProviderKind.OPENAI, 1, "gpt-4o-mini"),
        stageConfig(StageType.VOICE, ProviderKind.SPEECHKIT, 2, "alena"),
        stageConfig(StageType.SONG, UNKNOWN, 3, "song-of-the-future"),
      ]),
    ];
    const watcher = client.watchConfig({ backoff: { initialMs: 50, maxMs: 400 } });
    const states: WatcherState[] = [];
    watcher.onStateChange((state) => states.push(state));
    const events: ConfigChangeEvent[] = [];
    watcher.onChange((event) => events.push(event));

    // A snapshot with a provider kind this client does not know: ready, SONG absent.
    await watcher.waitReady(DEADLINE_MS);
    assert.equal(watcher.state, "ready");
    assert.equal(watcher.get("POEM")?.providerKind, "OPENAI");
    assert.equal(watcher.get("VOICE")?.model, "alena");
    assert.equal(watcher.get("SONG"), undefined, "a stage it cannot represent stays unconfigured");
    assert.equal(watcher.revision, 3);
    const songWarning = await warnings.nth(1, DEADLINE_MS);
    assert.match(songWarning, /SONG config at revision 3 has providerKind=99/);
    assert.match(songWarning, /SONG stays unconfigured/);

    // A change of a stage this client does not know: ignored, yet applied.
    server.send(change(stageConfig(UNKNOWN, ProviderKind.OPENAI, 4, "from-stage-99")));
    assert.match(await warnings.nth(2, DEADLINE_MS), /a config at revision 4 has stageType=99.*ignoring it/);
    assert.equal(watcher.revision, 4, "the applied revision advances past what it cannot show");
    assert.equal(watcher.state, "ready");

    // Unknown status, cause, source and reason: read as UNSPECIFIED, the change applies.
    server.send(
      change(
        {
          ...stageConfig(StageType.POEM, ProviderKind.OPENAI, 5, "gpt-4.1"),
          status: UNKNOWN,
          statusCause: UNKNOWN,
          source: UNKNOWN,
        },
        UNKNOWN,
      ),
    );
    const poemChange = await waitForChange(watcher, (event) => event.revision === 5, DEADLINE_MS);
    assert.deepEqual(poemChange.changed, ["POEM"]);
    assert.equal(poemChange.reason, "UNSPECIFIED");
    const poem = watcher.get("POEM");
    assert.equal(poem?.model, "gpt-4.1");
    assert.equal(poem?.status, "UNSPECIFIED");
    assert.equal(poem?.source, "UNSPECIFIED");

    // A configured stage moves to an unknown provider kind: it keeps its last config.
    server.send(change(stageConfig(StageType.VOICE, UNKNOWN, 6, "voice-of-the-future")));
    assert.match(
      await warnings.nth(3, DEADLINE_MS),
      /VOICE config at revision 6 has providerKind=99.*keeping the VOICE config from revision 2/,
    );
    assert.equal(watcher.revision, 6);

    // Heartbeats and the same unknown value at a later revision warn no more; good
    // changes of the other stages still apply.
    server.send(
      HEARTBEAT,
      HEARTBEAT,
      change(stageConfig(StageType.VOICE, UNKNOWN, 7, "voice-of-the-future-2")),
      HEARTBEAT,
      change(stageConfig(StageType.CLIP, ProviderKind.PIKA, 8, "pika-1.5")),
      HEARTBEAT,
      change(stageConfig(StageType.VOICE, UNKNOWN, 9, "voice-of-the-future-3")),
    );
    await waitForRevision(watcher, 9, DEADLINE_MS);
    assert.equal(watcher.get("CLIP")?.model, "pika-1.5");
    assert.equal(watcher.get("VOICE")?.model, "alena");
    assert.equal(watcher.get("VOICE")?.revision, 2);
    assert.equal(warnings.messages.length, 3, JSON.stringify(warnings.messages));

    // The stream ends: the client resumes after the revision it applied, and the resume
    // snapshot repeating the same unknown values warns no more.
    server.opening = () => [
      snapshot(9, [
        { ...stageConfig(StageType.POEM, ProviderKind.OPENAI, 5, "gpt-4.1"), status: UNKNOWN },
        stageConfig(StageType.VOICE, UNKNOWN, 9, "voice-of-the-future-3"),
        stageConfig(StageType.SONG, UNKNOWN, 3, "song-of-the-future"),
        stageConfig(StageType.CLIP, ProviderKind.PIKA, 8, "pika-1.5"),
        stageConfig(UNKNOWN, ProviderKind.OPENAI, 4, "from-stage-99"),
      ]),
    ];
    const resnapshot = waitForChange(watcher, (event) => event.kind === "snapshot", DEADLINE_MS);
    server.endStreams();
    await waitForState(watcher, "stale", DEADLINE_MS);
    const resumed = await server.waitForWatch(2, DEADLINE_MS);
    assert.equal(resumed.resumeRevision, 9n, "resumes after the revision it applied, unknown values included");
    await resnapshot;
    await waitForState(watcher, "ready", DEADLINE_MS);
    assert.equal(watcher.revision, 9);
    assert.equal(watcher.get("VOICE")?.model, "alena", "kept across the resume snapshot");
    assert.equal(watcher.get("SONG"), undefined);
    assert.equal(watcher.get("CLIP")?.model, "pika-1.5");

    // VOICE readable again, then unknown again: that is news, and warned once more.
    server.send(change(stageConfig(StageType.VOICE, ProviderKind.SPEECHKIT, 10, "jane")));
    await waitForChange(watcher, (event) => event.revision === 10, DEADLINE_MS);
    assert.equal(watcher.get("VOICE")?.model, "jane");
    server.send(change(stageConfig(StageType.VOICE, UNKNOWN, 11, "voice-of-the-future-4")));
    assert.match(await warnings.nth(4, DEADLINE_MS), /VOICE config at revision 11.*from revision 10/);
    assert.equal(watcher.get("VOICE")?.model, "jane");

    assert.equal(warnings.messages.length, 4, JSON.stringify(warnings.messages));
    assert.deepEqual(states, ["ready", "stale", "ready"], "the only transitions are the stream's own end and resume");
    assert.equal(watcher.lastError, undefined);
    assert.deepEqual(
      events.map((event) => event.revision),
      [3, 5, 8, 9, 10],
      "listeners hear of what changed, not of configs the client could not read",
    );
    await watcher.close();
  });

  test("unary answers with unknown values: unknown status reads UNSPECIFIED, an unknown provider is refused", async () => {
    server.modelList = {
      models: ["model-a"],
      selectedModel: "model-a",
      providerKind: UNKNOWN,
      status: UNKNOWN,
    };
    const models = await client.listModels("VOICE");
    assert.equal(models.providerKind, undefined);
    assert.equal(models.status, "UNSPECIFIED");
    assert.deepEqual(models.models, ["model-a"]);

    server.activeConfig = { ...stageConfig(StageType.VOICE, UNKNOWN, 12, "voice"), statusCause: StatusCause.AUTH };
    await assert.rejects(client.getActiveConfig("VOICE"), (error: unknown) => {
      assert.ok(error instanceof TypeError);
      assert.match(error.message, /VOICE config at revision 12 has providerKind=99/);
      return true;
    });
  });
});
