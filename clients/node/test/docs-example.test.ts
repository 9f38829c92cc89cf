/**
 * The Node example of docs/other-languages.md between `<!-- example:node-outcomes -->`
 * and its closing marker, run for real: type-checked as the page shows it (strict, with
 * `@stageconfig/client` resolved to this package's sources), transpiled, executed in a
 * child Node process against the real Python server, and its task outcomes read back
 * from GetFleetStatus.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";

import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import ts from "typescript";

import { StageConfigService, StageType } from "../src/gen/stageconfig/v1/stage_config_pb.js";
import { PythonServer, REPO_ROOT, Scratch, updateFromPython } from "./support/server.js";

const run = promisify(execFile);
const PAGE = join(REPO_ROOT, "docs", "other-languages.md");

/** The ```ts block between the page's markers of `name`. */
function example(name: string): string {
  const text = readFileSync(PAGE, "utf8");
  const section = text.split(`<!-- example:${name} `)[1]?.split(`<!-- /example:${name} -->`)[0];
  assert.ok(section !== undefined, `no example:${name} in ${PAGE}`);
  const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(block !== undefined, `no ts block in example:${name}`);
  return block;
}

describe("docs/other-languages.md: the Node example of recordOutcome", () => {
  const scratch = new Scratch();
  let server: PythonServer;

  before(async () => {
    server = await PythonServer.start({ dataDir: scratch.path });
    await updateFromPython(
      { target: server.target },
      { stage: "VOICE", provider: "SPEECHKIT", apiKey: "AQVN-node-docs-key-0001", model: "alena" },
    );
  });

  after(async () => {
    await server?.stop();
    scratch.dispose();
  });

  test("type-checks as shown", () => {
    const file = join(scratch.path, "example.ts");
    writeFileSync(file, example("node-outcomes"));
    const program = ts.createProgram([file], {
      strict: true,
      exactOptionalPropertyTypes: true,
      noEmit: true,
      skipLibCheck: true,
      module: ts.ModuleKind.ES2022,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      target: ts.ScriptTarget.ES2022,
      lib: ["lib.es2022.d.ts", "lib.dom.d.ts"],
      types: ["node"],
      typeRoots: [join(REPO_ROOT, "clients", "node", "node_modules", "@types")],
      paths: { "@stageconfig/client": [join(REPO_ROOT, "clients", "node", "src", "index.ts")] },
    });
    const problems = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
    assert.deepEqual(problems, []);
  });

  test("runs as shown, and the fleet view shows its tasks", async () => {
    const source = example("node-outcomes");
    const { outputText, diagnostics } = ts.transpileModule(source, {
      reportDiagnostics: true,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    });
    assert.deepEqual(diagnostics ?? [], []);
    const index = new URL("../src/index.js", import.meta.url).href;
    assert.ok(outputText.includes('"@stageconfig/client"'));
    const script = join(scratch.path, "example.mjs");
    writeFileSync(script, outputText.replaceAll('"@stageconfig/client"', JSON.stringify(index)));
    await run(process.execPath, [script], {
      env: { PATH: process.env["PATH"] ?? "", STAGECONFIG_TARGET: server.target },
      timeout: 30_000,
    });

    const admin = createClient(StageConfigService, createGrpcTransport({ baseUrl: `http://${server.target}` }));
    const fleet = await admin.getFleetStatus({ stageType: StageType.VOICE });
    const worker = fleet.clients.find((c) => c.clientId === "voice-worker-1");
    const outcomes = worker?.stages.find((s) => s.stageType === StageType.VOICE)?.outcomes ?? [];
    assert.equal(outcomes.length, 1, JSON.stringify(fleet.clients.map((c) => c.clientId)));
    assert.deepEqual([outcomes[0]?.succeeded, outcomes[0]?.failed], [2n, 1n]);
    assert.deepEqual(outcomes[0]?.failuresByCause, { RangeError: 1n });
    assert.equal(outcomes[0]?.durationBuckets[0], 3n); // three quick tasks
  });
});
