/** What needs no server: the public surface, backoff arithmetic, key masking. */

import assert from "node:assert/strict";
import { inspect } from "node:util";
import { describe, test } from "node:test";

import { Backoff } from "../src/backoff.js";
import * as publicApi from "../src/index.js";
import { StageConfig } from "../src/index.js";

describe("public API", () => {
  test("exports exactly these runtime names", () => {
    assert.deepEqual(Object.keys(publicApi).sort(), [
      "ClientClosedError",
      "ConfigWatcher",
      "ConflictError",
      "DeadlineExceededError",
      "InvalidArgumentError",
      "KeyRejectedError",
      "NotFoundError",
      "NotReadyError",
      "PROVIDER_KINDS",
      "PermissionDeniedError",
      "RPCError",
      "STAGE_TYPES",
      "StageConfig",
      "StageConfigClient",
      "StageConfigError",
      "UnauthenticatedError",
      "UnavailableError",
    ]);
  });
});

describe("Backoff", () => {
  test("doubles up to the cap, each wait in the upper half of its step", () => {
    const low = new Backoff({ initialMs: 100, maxMs: 1_000 }, () => 0);
    assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => low.next()), [50, 100, 200, 400, 500, 500]);
    const high = new Backoff({ initialMs: 100, maxMs: 1_000 }, () => 0.999_999);
    assert.ok(Math.abs(high.next() - 100) < 0.01);
    high.reset();
    assert.ok(Math.abs(high.next() - 100) < 0.01, "reset starts over");
  });

  test("refuses nonsense settings", () => {
    assert.throws(() => new Backoff({ initialMs: 0 }), RangeError);
    assert.throws(() => new Backoff({ initialMs: 500, maxMs: 100 }), RangeError);
  });
});

describe("StageConfig", () => {
  const config = new StageConfig({
    stageType: "POEM",
    providerKind: "OPENAI",
    apiKey: "sk-plaintext-secret-a1b2",
    model: "gpt-4o-mini",
    revision: 7,
    status: "ACTIVE",
    source: "DATABASE",
    options: {},
    statusReason: "",
    apiKeyMasked: false,
    apiKeyFingerprint: "3f2a",
    updatedAt: undefined,
    modelsCacheUpdatedAt: undefined,
  });

  test("printing or serialising never shows the plaintext key", () => {
    for (const text of [inspect(config), String(config), JSON.stringify(config), `${config}`]) {
      assert.ok(!text.includes("plaintext-secret"), text);
      assert.ok(text.includes("…a1b2"), text);
    }
    assert.equal(config.apiKey, "sk-plaintext-secret-a1b2");
  });

  test("is frozen", () => {
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.options));
  });
});
