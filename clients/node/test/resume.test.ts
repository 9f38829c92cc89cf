/**
 * Reconnect and resume against the real Python server (plaintext loopback, auth off):
 * a dropped stream resumes with exactly the missed change, and a restart of the server
 * on the same database resumes without a new snapshot.
 */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { StageConfigClient, type ConfigChangeEvent, type ConfigWatcher } from "../src/index.js";
import { CuttableProxy } from "./support/proxy.js";
import { PythonServer, Scratch, updateFromPython, waitForChange, waitForState } from "./support/server.js";

const FAST_RECONNECT = { backoff: { initialMs: 50, maxMs: 400 }, idleTimeoutMs: 3_000 } as const;

function record(watcher: ConfigWatcher): ConfigChangeEvent[] {
  const events: ConfigChangeEvent[] = [];
  watcher.onChange((event) => events.push(event));
  return events;
}

describe("ConfigWatcher reconnect and resume", () => {
  const scratch = new Scratch();
  let server: PythonServer;
  let proxy: CuttableProxy;
  const clients: StageConfigClient[] = [];

  before(async () => {
    server = await PythonServer.start({ dataDir: scratch.path });
    proxy = await CuttableProxy.start(server.port);
    await updateFromPython(
      { target: server.target },
      { stage: "VOICE", provider: "SPEECHKIT", apiKey: "AQVN-first-key", model: "alena" },
    );
  });

  after(async () => {
    await Promise.all(clients.map((client) => client.close()));
    await proxy?.close();
    await server?.stop();
    scratch.dispose();
  });

  test("a dropped stream resumes from its revision and gets only the missed change", async () => {
    const client = new StageConfigClient({ target: proxy.target });
    clients.push(client);
    const watcher = client.watchConfig({ stages: ["VOICE", "POEM"], ...FAST_RECONNECT });
    await watcher.waitReady(10_000);
    const held = watcher.revision;
    assert.equal(watcher.get("VOICE")?.model, "alena");
    assert.equal(watcher.get("POEM"), undefined, "an unconfigured stage is absent");

    proxy.drop();
    await waitForState(watcher, "stale", 10_000);
    assert.equal(watcher.get("VOICE")?.model, "alena", "a stale watcher keeps serving what it holds");

    const missed = await updateFromPython(
      { target: server.target },
      { stage: "VOICE", provider: "SPEECHKIT", apiKey: "AQVN-missed-key", model: "jane" },
    );
    assert.ok(missed > held);
    const events = record(watcher);
    const ready = waitForState(watcher, "ready", 10_000);
    proxy.restore();
    await ready;

    assert.deepEqual(
      events.map((e) => [e.kind, e.revision, e.changed]),
      [["change", missed, ["VOICE"]]],
      "resuming sends exactly the missed change, no snapshot",
    );
    assert.equal(watcher.revision, missed);
    assert.equal(watcher.get("VOICE")?.apiKey, "AQVN-missed-key");
    assert.equal(watcher.get("VOICE")?.model, "jane");
  });

  test("a silent connection is dropped after idleTimeoutMs and the watch resumes on a new one", async () => {
    const client = new StageConfigClient({ target: proxy.target });
    clients.push(client);
    const watcher = client.watchConfig({ stages: ["VOICE"], backoff: FAST_RECONNECT.backoff, idleTimeoutMs: 2_500 });
    await watcher.waitReady(10_000);
    const events = record(watcher);

    proxy.freeze();
    await waitForState(watcher, "stale", 10_000);
    assert.match(watcher.lastError?.message ?? "", /no message from the server for 2500 ms/);
    await waitForState(watcher, "ready", 10_000);
    assert.deepEqual(events, [], "resumed at the head: nothing to send again");

    // The silenced connection would hold the server's graceful stop for its grace period.
    proxy.drop();
    proxy.restore();
  });

  test("a server restart on the same database resumes without a snapshot", async () => {
    const client = new StageConfigClient({ target: server.target });
    clients.push(client);
    const watcher = client.watchConfig({ stages: ["VOICE"], ...FAST_RECONNECT });
    await watcher.waitReady(10_000);
    const held = watcher.revision;
    const events = record(watcher);

    await server.stop();
    await waitForState(watcher, "stale", 10_000);
    server = await PythonServer.start({ dataDir: scratch.path, port: server.port });
    await waitForState(watcher, "ready", 15_000);
    assert.deepEqual(events, [], "nothing changed while the server was down: no snapshot, no change");
    assert.equal(watcher.revision, held);

    const arrived = waitForChange(watcher, (e) => e.snapshot.configs.get("VOICE")?.model === "filipp", 10_000);
    const revision = await updateFromPython(
      { target: server.target },
      { stage: "VOICE", provider: "SPEECHKIT", apiKey: "AQVN-after-restart", model: "filipp" },
    );
    const event = await arrived;
    assert.equal(event.kind, "change");
    assert.equal(event.revision, revision);
    assert.equal(watcher.get("VOICE")?.apiKey, "AQVN-after-restart");
  });
});
