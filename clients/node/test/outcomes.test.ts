/**
 * Task outcomes (`ConfigWatcher.recordOutcome`): the ledger's bounds and buckets, and,
 * against the real Python server, outcomes recorded in Node appear per revision in
 * GetFleetStatus (succeeded, failed, retried, causes, p50), a report whose answer was
 * lost is retried with the same sequence and counted once, and the bound on causes
 * holds (the server accepts what the client sends).
 */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import {
  StageConfigService,
  StageType,
  type FleetClient,
  type RevisionFleetStatus,
} from "../src/gen/stageconfig/v1/stage_config_pb.js";
import { StageConfigClient, type ConfigWatcher } from "../src/index.js";
import {
  DURATION_BUCKETS,
  MAX_CAUSES,
  MAX_ENTRIES,
  OutcomeLedger,
  PER_STAGE_IN_A_REPORT,
  cleanCause,
  durationBucket,
} from "../src/outcomes.js";
import { LossyRelay } from "./support/relay.js";
import { PythonServer, Scratch, updateFromPython, waitForChange } from "./support/server.js";

const DEADLINE_MS = 10_000;

/** Resolves with `probe()`'s first defined answer (polled every 50 ms); rejects after `timeoutMs`. */
async function eventually<T>(probe: () => Promise<T | undefined> | T | undefined, timeoutMs: number, what: string): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("the outcome ledger", () => {
  test("durations land in the contract's 14 buckets (a bound counts in its own bucket)", () => {
    assert.equal(DURATION_BUCKETS, 14);
    assert.equal(durationBucket(0), 0);
    assert.equal(durationBucket(0.05), 0);
    assert.equal(durationBucket(0.050001), 1);
    assert.equal(durationBucket(1), 4);
    assert.equal(durationBucket(500), 12);
    assert.equal(durationBucket(500.1), 13);
    assert.equal(durationBucket(Infinity), 13);
  });

  test("causes are printable, at most 64 characters; none is unknown, nothing left is other", () => {
    assert.equal(cleanCause(undefined), "unknown");
    assert.equal(cleanCause("  Timeout\n"), "Timeout");
    assert.equal(cleanCause("x".repeat(100)), "x".repeat(64));
    assert.equal(cleanCause("é\u0000"), "other");
  });

  test("at most 32 causes per revision; the rest count as other", () => {
    const ledger = new OutcomeLedger();
    for (let i = 0; i < 40; i += 1) ledger.record("POEM", 3, false, { cause: `Cause${i}` });
    const [entry] = ledger.drain();
    assert.equal(entry?.failuresByCause.size, MAX_CAUSES);
    assert.equal(entry?.failuresByCause.get("other"), 40 - (MAX_CAUSES - 1));
    assert.equal(entry?.failed, 40);
  });

  test("retried is counted apart from failed; a bad duration is refused and nothing counted", () => {
    const ledger = new OutcomeLedger();
    ledger.record("VOICE", 2, false, { cause: "RateLimited", retried: true, durationSeconds: 0.2 });
    assert.throws(() => ledger.record("VOICE", 2, true, { durationSeconds: -1 }), RangeError);
    assert.throws(() => ledger.record("VOICE", 2, true, { durationSeconds: Number.NaN }), RangeError);
    const [entry] = ledger.drain();
    assert.deepEqual([entry?.succeeded, entry?.failed, entry?.retried], [0, 0, 1]);
    assert.equal(entry?.failuresByCause.size, 0);
    assert.equal(entry?.durationBuckets[2], 1);
  });

  test("beyond 64 revisions waiting the oldest goes, counted as dropped; a drain takes 16 per stage", () => {
    const ledger = new OutcomeLedger();
    for (let revision = 1; revision <= MAX_ENTRIES + 2; revision += 1) {
      ledger.record("POEM", revision, true);
      ledger.record("POEM", revision, true);
    }
    assert.equal(ledger.size, MAX_ENTRIES);
    assert.equal(ledger.dropped, 4);
    ledger.record("CLIP", 1, true); // a new entry: POEM's revision 3 goes
    assert.equal(ledger.dropped, 6);
    const first = ledger.drain();
    assert.equal(first.filter((e) => e.stage === "POEM").length, PER_STAGE_IN_A_REPORT);
    assert.equal(first[0]?.revision, 4); // oldest first
    assert.ok(first.some((e) => e.stage === "CLIP"));
    assert.equal(ledger.size, MAX_ENTRIES - PER_STAGE_IN_A_REPORT - 1); // the rest waits
  });
});

describe("task outcomes seen by the real server", () => {
  const scratch = new Scratch();
  let server: PythonServer;
  let client: StageConfigClient;
  let admin: Client<typeof StageConfigService>;

  const update = (model: string, key: string): Promise<number> =>
    updateFromPython({ target: server.target }, { stage: "VOICE", provider: "SPEECHKIT", apiKey: key, model });

  const revisionStatus = async (revision: number): Promise<RevisionFleetStatus | undefined> => {
    const fleet = await admin.getFleetStatus({ stageType: StageType.VOICE });
    return fleet.stages[0]?.revisions.find((r) => r.revision === BigInt(revision));
  };

  const fleetClient = async (clientId: string): Promise<FleetClient | undefined> => {
    const fleet = await admin.getFleetStatus({});
    return fleet.clients.find((c) => c.clientId === clientId);
  };

  const watch = async (clientId: string, owner: StageConfigClient = client): Promise<ConfigWatcher> => {
    const watcher = owner.watchConfig({ stages: ["VOICE"], clientId, reportIntervalMs: 300 });
    await watcher.waitReady(DEADLINE_MS);
    return watcher;
  };

  before(async () => {
    server = await PythonServer.start({ dataDir: scratch.path });
    client = new StageConfigClient({ target: server.target });
    admin = createClient(StageConfigService, createGrpcTransport({ baseUrl: `http://${server.target}` }));
    await update("alena", "AQVN-node-outcome-key-0001");
  });

  after(async () => {
    await client?.close();
    await server?.stop();
    scratch.dispose();
  });

  test("outcomes appear per revision: succeeded, failed, retried, causes, p50", async () => {
    const watcher = await watch("node-outcomes");
    const first = watcher.get("VOICE")?.revision ?? 0;
    assert.ok(first > 0);
    assert.throws(() => watcher.recordOutcome("POEM", true), TypeError); // not watched
    for (let i = 0; i < 3; i += 1) watcher.recordOutcome("VOICE", true, { durationSeconds: 0.3 });
    for (let i = 0; i < 2; i += 1) watcher.recordOutcome("VOICE", false, { cause: "ProviderTimeout", durationSeconds: 0.3 });
    watcher.recordOutcome("VOICE", false, { cause: "RateLimited", retried: true });

    const second = await update("jane", "AQVN-node-outcome-key-0002");
    if (watcher.revision < second) await waitForChange(watcher, (event) => event.revision === second, DEADLINE_MS);
    assert.equal(watcher.get("VOICE")?.revision, second);
    watcher.recordOutcome("VOICE", true, { durationSeconds: 2 }); // with the config in use now

    const old = await eventually(
      async () => {
        const status = await revisionStatus(first);
        return status !== undefined && status.succeeded + status.failed + status.retried === 6n ? status : undefined;
      },
      5_000,
      `the outcomes of revision ${first}`,
    );
    assert.deepEqual([old.succeeded, old.failed, old.retried], [3n, 2n, 1n]);
    assert.deepEqual(old.failuresByCause, { ProviderTimeout: 2n });
    assert.equal(old.failureRate, 0.4);
    assert.equal(old.p50DurationSeconds, 0.5);
    const now = await eventually(
      async () => {
        const status = await revisionStatus(second);
        return status?.succeeded === 1n ? status : undefined;
      },
      5_000,
      `the outcome of revision ${second}`,
    );
    assert.equal(now.failed, 0n);
    assert.equal(now.p50DurationSeconds, 2.5);
    assert.equal(watcher.outcomesDropped, 0);
  });

  test("a report whose answer was lost is retried with its sequence and counted once", async () => {
    const relay = await LossyRelay.start(server.target);
    const relayed = new StageConfigClient({ target: relay.target });
    try {
      const watcher = await watch("node-lossy", relayed);
      relay.loseAnswers = 2;
      for (let i = 0; i < 5; i += 1) watcher.recordOutcome("VOICE", true);
      watcher.recordOutcome("VOICE", false, { cause: "Boom" });
      const delivered = await eventually(
        () => relay.answers.find((a) => a.tasks > 0n && !a.lost),
        5_000,
        "the outcomes delivered after two lost answers",
      );
      const attempts = relay.answers.filter((a) => a.sequence === delivered.sequence);
      assert.deepEqual(
        attempts.map((a) => [a.lost, a.duplicate]),
        [
          [true, false], // counted, answer lost
          [true, true], // the retry: already counted
          [false, true],
        ],
      );
      const mine = await fleetClient("node-lossy");
      const outcomes = mine?.stages.find((s) => s.stageType === StageType.VOICE)?.outcomes ?? [];
      assert.equal(outcomes.length, 1);
      assert.deepEqual([outcomes[0]?.succeeded, outcomes[0]?.failed], [5n, 1n]); // not 15 and 3
      assert.deepEqual(outcomes[0]?.failuresByCause, { Boom: 1n });
    } finally {
      await relayed.close();
      await relay.close();
    }
  });

  test("the bound on causes holds: 32 at most, the rest as other, long ones cut", async () => {
    const watcher = await watch("node-causes");
    watcher.recordOutcome("VOICE", false, { cause: "y".repeat(100) });
    for (let i = 0; i < 39; i += 1) watcher.recordOutcome("VOICE", false, { cause: `Cause${i}` });
    const outcomes = await eventually(
      async () => {
        const mine = await fleetClient("node-causes");
        const found = mine?.stages.find((s) => s.stageType === StageType.VOICE)?.outcomes[0];
        return found?.failed === 40n ? found : undefined;
      },
      5_000,
      "40 failures reported",
    );
    const causes = outcomes.failuresByCause;
    assert.equal(Object.keys(causes).length, MAX_CAUSES);
    assert.equal(causes["y".repeat(64)], 1n);
    assert.equal(causes["other"], BigInt(40 - (MAX_CAUSES - 1)));
    assert.equal(watcher.outcomesDropped, 0);
  });

  test("close() delivers the outcomes recorded since the last report", async () => {
    const quiet = new StageConfigClient({ target: server.target });
    const watcher = quiet.watchConfig({ stages: ["VOICE"], clientId: "node-closing", reportIntervalMs: 600_000 });
    await watcher.waitReady(DEADLINE_MS);
    await eventually(() => (watcher.reportsSent > 0 ? true : undefined), 5_000, "the report after the snapshot");
    watcher.recordOutcome("VOICE", false, { cause: "ShutDown" }); // the next report is 10 minutes away
    await quiet.close();
    assert.equal(watcher.reportsSent, 2);
    const mine = await fleetClient("node-closing");
    const outcomes = mine?.stages.find((s) => s.stageType === StageType.VOICE)?.outcomes ?? [];
    assert.deepEqual(outcomes[0]?.failuresByCause, { ShutDown: 1n });
  });
});
