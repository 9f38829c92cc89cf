/**
 * The Node client against the real Python server, as deployed off loopback would be:
 * TLS (a self-signed certificate the client trusts) and bearer tokens with roles.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { after, before, describe, test } from "node:test";

import { ConnectError } from "@connectrpc/connect";

import {
  ClientClosedError,
  ConflictError,
  InvalidArgumentError,
  NotFoundError,
  NotReadyError,
  PermissionDeniedError,
  RPCError,
  StageConfigClient,
  UnauthenticatedError,
  UnavailableError,
  type ClientOptions,
} from "../src/index.js";
import {
  PythonServer,
  Scratch,
  makeTlsFiles,
  updateFromPython,
  waitForChange,
  type TlsFiles,
} from "./support/server.js";

/** A loopback port nothing listens on (bound, then released). */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = address !== null && typeof address === "object" ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

const ADMIN_TOKEN = "admin-secret-for-node-tests";
const WORKER_TOKEN = "worker-secret-for-node-tests";
const VOICE_KEY = "AQVN-node-round-trip-key";

describe("StageConfigClient over TLS with tokens", () => {
  const scratch = new Scratch();
  let server: PythonServer;
  let tls: TlsFiles;
  const clients: StageConfigClient[] = [];

  const connect = (token: string | undefined, extra: Partial<ClientOptions> = {}): StageConfigClient => {
    const client = new StageConfigClient({
      target: server.target,
      ...(token !== undefined && { token }),
      tls: { ca: readFileSync(tls.cert) },
      ...extra,
    });
    clients.push(client);
    return client;
  };

  before(async () => {
    tls = await makeTlsFiles(scratch.path);
    server = await PythonServer.start({
      dataDir: scratch.path,
      tls,
      tokens: [`ops:admin:${ADMIN_TOKEN}`, `worker1:worker:${WORKER_TOKEN}`],
    });
  });

  after(async () => {
    await Promise.all(clients.map((client) => client.close()));
    await server?.stop();
    scratch.dispose();
  });

  test("round trip: updateConfig, then getActiveConfig returns the same key", async () => {
    const admin = connect(ADMIN_TOKEN);
    const worker = connect(WORKER_TOKEN);

    const result = await admin.updateConfig({
      stage: "VOICE",
      provider: "SPEECHKIT",
      apiKey: VOICE_KEY,
      model: "alena",
    });
    assert.equal(result.written, true);
    assert.equal(result.config.apiKeyMasked, true, "admins never see a plaintext key");
    assert.notEqual(result.config.apiKey, VOICE_KEY);
    assert.ok(result.models.includes("alena"));

    const active = await worker.getActiveConfig("VOICE");
    assert.equal(active.apiKey, VOICE_KEY);
    assert.equal(active.apiKeyMasked, false);
    assert.equal(active.providerKind, "SPEECHKIT");
    assert.equal(active.model, "alena");
    assert.equal(active.source, "DATABASE");
    assert.equal(active.revision, result.config.revision);
    assert.ok(!String(active).includes(VOICE_KEY), "toString masks the key");
    assert.ok(!JSON.stringify(active).includes(VOICE_KEY), "JSON masks the key");

    const models = await worker.listModels("VOICE");
    assert.equal(models.selectedModel, "alena");
    assert.equal(models.providerKind, "SPEECHKIT");
    assert.ok(models.models.includes("jane"));
  });

  test("an invalid request is an InvalidArgumentError naming the field", async () => {
    const admin = connect(ADMIN_TOKEN);
    const error = await admin
      .updateConfig({ stage: "VOICE", provider: "OPENAI", apiKey: "sk-whatever-0123456789", model: "gpt-4o" })
      .then(
        () => assert.fail("VOICE with OPENAI must be refused"),
        (e: unknown) => e,
      );
    assert.ok(error instanceof InvalidArgumentError, `got ${String(error)}`);
    assert.ok(!(error instanceof ConnectError), "user code never sees a ConnectError");
    assert.equal(error.code, "INVALID_ARGUMENT");
    assert.equal(error.field, "provider_kind");
    assert.match(error.description, /not allowed for stage VOICE/);
  });

  test("statuses map to typed errors: conflict, not found, permission, authentication", async () => {
    const admin = connect(ADMIN_TOKEN);
    const worker = connect(WORKER_TOKEN);
    const stored = await worker.getActiveConfig("VOICE");

    await assert.rejects(
      admin.updateConfig({ stage: "VOICE", provider: "SPEECHKIT", model: "jane", expectedRevision: stored.revision - 1 }),
      (e: unknown) => e instanceof ConflictError && e.code === "ABORTED" && e.currentRevision === stored.revision,
    );
    await assert.rejects(worker.getActiveConfig("CLIP"), NotFoundError);
    await assert.rejects(
      worker.updateConfig({ stage: "VOICE", provider: "SPEECHKIT", model: "jane" }),
      PermissionDeniedError,
    );
    await assert.rejects(admin.getActiveConfig("VOICE"), PermissionDeniedError);
    await assert.rejects(connect("not-a-known-token").getActiveConfig("VOICE"), UnauthenticatedError);
    await assert.rejects(connect(undefined).listModels("VOICE"), UnauthenticatedError);
  });

  test("a watch receives a change made from Python", async () => {
    const worker = connect(WORKER_TOKEN);
    const watcher = worker.watchConfig({ stages: ["VOICE"], idleTimeoutMs: 5_000 });
    await watcher.waitReady(10_000);
    assert.equal(watcher.state, "ready");
    const before = watcher.get("VOICE");
    assert.ok(before !== undefined);
    assert.equal(before.apiKey, VOICE_KEY);

    const arrived = waitForChange(watcher, (e) => e.snapshot.configs.get("VOICE")?.model === "filipp", 10_000);
    const revision = await updateFromPython(
      { target: server.target, token: ADMIN_TOKEN, caFile: tls.cert },
      { stage: "VOICE", provider: "SPEECHKIT", apiKey: "AQVN-changed-from-python", model: "filipp" },
    );
    const event = await arrived;

    assert.equal(event.kind, "change");
    assert.equal(event.reason, "ADMIN_UPDATE");
    assert.deepEqual(event.changed, ["VOICE"]);
    assert.equal(event.revision, revision);
    assert.equal(watcher.revision, revision);
    const now = watcher.get("VOICE");
    assert.equal(now?.apiKey, "AQVN-changed-from-python", "workers get the plaintext key");
    assert.equal(now?.revision, revision);
    assert.ok(before.revision < revision);
    await watcher.close();
    assert.equal(watcher.state, "closed");
    assert.throws(() => watcher.get("VOICE"), ClientClosedError);
  });

  test("a watch with a bad token turns fatal and waitReady says why", async () => {
    const watcher = connect("not-a-known-token").watchConfig();
    await assert.rejects(watcher.waitReady(10_000), UnauthenticatedError);
    assert.equal(watcher.state, "fatal");
    assert.throws(() => watcher.get("VOICE"), UnauthenticatedError);
  });

  test("an unreachable server is UnavailableError, and waitReady times out with NotReadyError", async () => {
    const nowhere = new StageConfigClient({ target: `127.0.0.1:${await closedPort()}`, timeoutMs: 2_000 });
    clients.push(nowhere);
    const error = await nowhere.getActiveConfig("VOICE").then(
      () => assert.fail("nothing listens there"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof UnavailableError, `got ${String(error)}`);
    assert.ok(error instanceof RPCError);

    const watcher = nowhere.watchConfig({ backoff: { initialMs: 50, maxMs: 200 } });
    await assert.rejects(watcher.waitReady(300), NotReadyError);
    assert.equal(watcher.state, "connecting");
    assert.ok(watcher.lastError instanceof UnavailableError);
    assert.throws(() => watcher.get("VOICE"), NotReadyError);
  });
});
