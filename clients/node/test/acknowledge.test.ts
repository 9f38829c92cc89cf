/**
 * The Node watcher acknowledges what it applied (ReportStatus): against a real gRPC
 * server that records the reports (test/support/newer-server.ts), a report follows the
 * first snapshot and every change at once, a keepalive goes out every interval, a
 * config the client cannot represent is NACKed (and holds `appliedRevision` back), a
 * report the server did not answer is retried with the same sequence, the task
 * outcomes of a report refused for good are dropped and counted, and both
 * WatchConfig and ReportStatus carry the package version. Against the real Python
 * server, ListWatchers shows the revision the watcher acknowledged.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import {
  ConfigSource,
  ConfigStatus,
  ProviderKind,
  StageConfigService,
  StageType,
} from "../src/gen/stageconfig/v1/stage_config_pb.js";
import { StageConfigClient, type ConfigWatcher } from "../src/index.js";
import { CLIENT_VERSION } from "../src/version.js";
import { NewerServer, type ConfigMessage, type WatchMessage } from "./support/newer-server.js";
import { PythonServer, REPO_ROOT, Scratch, updateFromPython } from "./support/server.js";

const UNKNOWN = 99;
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

function change(config: ConfigMessage): WatchMessage {
  return { event: { case: "change", value: { revision: config.revision ?? 0n, config } } };
}

/** Resolves once `condition` holds (polled every 20 ms); rejects after `timeoutMs`. */
async function eventually(condition: () => boolean, timeoutMs: number, what: string): Promise<number> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return Date.now() - started;
}

describe("acknowledgements (ReportStatus)", () => {
  let server: NewerServer;
  let client: StageConfigClient;
  let watcher: ConfigWatcher;

  before(async () => {
    server = await NewerServer.start();
    server.opening = () => [
      snapshot(4, [
        stageConfig(StageType.POEM, ProviderKind.GEMINI, 3, "gemini-2.5-flash"),
        stageConfig(StageType.VOICE, ProviderKind.SPEECHKIT, 4, "alena"),
      ]),
    ];
    client = new StageConfigClient({ target: server.target });
    watcher = client.watchConfig({ clientId: "node-ack", reportIntervalMs: 400 });
    await watcher.waitReady(DEADLINE_MS);
  });

  after(async () => {
    await client.close();
    await server.close();
  });

  test("the version is the package's, sent in WatchConfig and ReportStatus", async () => {
    const manifest = JSON.parse(readFileSync(join(REPO_ROOT, "clients", "node", "package.json"), "utf8")) as {
      version: string;
    };
    assert.equal(CLIENT_VERSION, manifest.version);
    assert.equal(server.watchRequests[0]?.clientVersion, CLIENT_VERSION);
    await eventually(() => server.reports.length > 0, 1_000, "a report after the snapshot");
    const first = server.reports[0];
    assert.ok(first);
    assert.equal(first.clientId, "node-ack");
    assert.equal(first.clientVersion, CLIENT_VERSION);
    assert.equal(first.appliedRevision, 4n);
    assert.equal(first.pid, process.pid);
    assert.equal(first.reportIntervalSeconds, 1);
    const poem = first.stages.find((s) => s.stageType === StageType.POEM);
    assert.equal(poem?.revision, 3n);
  });

  test("a change is acknowledged within a second", async () => {
    server.send(change(stageConfig(StageType.VOICE, ProviderKind.SPEECHKIT, 5, "zahar")));
    const took = await eventually(
      () => server.reports.at(-1)?.appliedRevision === 5n,
      1_000,
      "revision 5 acknowledged",
    );
    assert.ok(took < 1_000);
    assert.equal(watcher.appliedRevision, 5);
  });

  test("keepalives go out every interval", async () => {
    const seen = server.reports.length;
    await eventually(() => server.reports.length >= seen + 2, 3_000, "two keepalives");
  });

  test("a config the client cannot represent is NACKed and holds appliedRevision back", async () => {
    server.send(change(stageConfig(StageType.POEM, UNKNOWN, 6, "future-model")));
    await eventually(
      () => server.reports.at(-1)?.stages.find((s) => s.stageType === StageType.POEM)?.nackRevision === 6n,
      2_000,
      "the NACK of revision 6",
    );
    const report = server.reports.at(-1);
    const poem = report?.stages.find((s) => s.stageType === StageType.POEM);
    assert.equal(poem?.revision, 3n); // still in use
    assert.match(poem?.nackReason ?? "", /providerKind=99/);
    assert.equal(report?.appliedRevision, 5n);
    assert.equal(watcher.revision, 6); // the stream went on: no replay on resume
    assert.equal(watcher.appliedRevision, 5);
  });

  test("a report the server did not answer is retried with the same sequence", async () => {
    const seen = server.reports.length;
    const acknowledged = watcher.reportsSent;
    server.failReports = 2;
    server.send(change(stageConfig(StageType.POEM, ProviderKind.OPENAI, 7, "gpt-4o")));
    await eventually(
      () =>
        server.failReports === 0 &&
        watcher.reportsSent > acknowledged &&
        server.reports.at(-1)?.appliedRevision === 7n,
      5_000,
      "revision 7 acknowledged after two failures",
    );
    const later = server.reports.slice(seen);
    const bySequence = new Map<bigint, bigint[]>();
    for (const report of later) {
      bySequence.set(report.sequence, [...(bySequence.get(report.sequence) ?? []), report.appliedRevision]);
    }
    // The two failed attempts were retried as they were: two repeats of a sequence, each
    // with what it said the first time (a keepalive may have taken one of the failures).
    assert.equal(later.length - bySequence.size, 2, JSON.stringify(later.map((r) => [String(r.sequence), String(r.appliedRevision)])));
    for (const revisions of bySequence.values()) assert.equal(new Set(revisions).size, 1);
    const sequences = server.reports.map((r) => r.sequence);
    for (let i = 1; i < sequences.length; i += 1) assert.ok(sequences[i]! >= sequences[i - 1]!);
  });

  test("outcomes in a report refused for good are dropped and counted; reporting goes on", async () => {
    const refused = server.reports.length;
    server.refuseOutcomeReports = 1;
    for (let i = 0; i < 3; i += 1) watcher.recordOutcome("VOICE", false, { cause: "Boom" });
    await eventually(() => watcher.outcomesDropped === 3, 2_000, "three outcomes dropped");
    assert.equal(server.refuseOutcomeReports, 0);
    const after = server.reports.length;
    await eventually(() => server.reports.length >= after + 1, 2_000, "a keepalive after the refusal");
    const carried = server.reports.slice(refused).filter((r) => r.stages.some((s) => s.outcomes.length > 0));
    assert.equal(carried.length, 1); // the refused one, never sent again
  });
});

describe("acknowledgements seen by the real server", () => {
  const scratch = new Scratch();
  let server: PythonServer;
  let client: StageConfigClient;

  before(async () => {
    server = await PythonServer.start({ dataDir: scratch.path });
    client = new StageConfigClient({ target: server.target });
  });

  after(async () => {
    await client?.close();
    await server?.stop();
    scratch.dispose();
  });

  test("ListWatchers shows the revision the watcher applied, and its version", async () => {
    const first = await updateFromPython(
      { target: server.target },
      { stage: "VOICE", provider: "SPEECHKIT", apiKey: "AQVN-node-ack-key-0001", model: "alena" },
    );
    const watcher = client.watchConfig({ clientId: "node-acknowledger", reportIntervalMs: 1_000 });
    await watcher.waitReady(DEADLINE_MS);
    const admin = createClient(StageConfigService, createGrpcTransport({ baseUrl: `http://${server.target}` }));
    const applied = async (): Promise<bigint | undefined> => {
      const response = await admin.listWatchers({});
      return response.watchers.find((w) => w.clientId === "node-acknowledger")?.appliedRevision;
    };
    let seen: bigint | undefined;
    const poll = async (want: number): Promise<void> => {
      const started = Date.now();
      while ((seen = await applied()) !== BigInt(want)) {
        if (Date.now() - started > 2_000) throw new Error(`applied_revision ${seen}, not ${want}, after 2 s`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    await poll(first);

    const second = await updateFromPython(
      { target: server.target },
      { stage: "VOICE", provider: "SPEECHKIT", apiKey: "AQVN-node-ack-key-0002", model: "jane" },
    );
    await poll(second); // within 2 s of the change
    const fleet = await admin.getFleetStatus({});
    const mine = fleet.clients.find((c) => c.clientId === "node-acknowledger");
    assert.equal(mine?.clientVersion, CLIENT_VERSION);
    assert.equal(mine?.silent, false);
  });
});
