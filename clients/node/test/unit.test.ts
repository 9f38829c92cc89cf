/** What needs no server: the public surface, backoff arithmetic, key masking, enum conversion. */

import assert from "node:assert/strict";
import { inspect } from "node:util";
import { describe, test } from "node:test";

import { create } from "@bufbuild/protobuf";

import { Backoff } from "../src/backoff.js";
import {
  UnrepresentableConfig,
  configFromPb,
  reasonFromPb,
  sourceFromPb,
  statusFromPb,
} from "../src/convert.js";
import * as pb from "../src/gen/stageconfig/v1/stage_config_pb.js";
import * as publicApi from "../src/index.js";
import { Route, StageConfig } from "../src/index.js";
import {
  CHANGE_REASONS,
  CONFIG_SOURCES,
  CONFIG_STATUSES,
  PROVIDER_KINDS,
  STAGE_TYPES,
} from "../src/types.js";

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
      "Route",
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

describe("enum conversion", () => {
  /** The member names of a generated enum, UNSPECIFIED included. */
  const names = (enumObject: object): string[] =>
    Object.keys(enumObject)
      .filter((key) => Number.isNaN(Number(key)))
      .sort();

  test("the client lists every value of the proto's enums (regenerate, then update types.ts)", () => {
    assert.deepEqual([...STAGE_TYPES, "UNSPECIFIED"].sort(), names(pb.StageType));
    assert.deepEqual([...PROVIDER_KINDS, "UNSPECIFIED"].sort(), names(pb.ProviderKind));
    assert.deepEqual([...CONFIG_STATUSES].sort(), names(pb.ConfigStatus));
    assert.deepEqual([...CONFIG_SOURCES].sort(), names(pb.ConfigSource));
    assert.deepEqual([...CHANGE_REASONS].sort(), names(pb.ChangeReason));
  });

  test("a value newer than this client reads as UNSPECIFIED", () => {
    const newer: number = 99; // as protobuf-es decodes a value missing from the generated enum
    assert.equal(statusFromPb(newer), "UNSPECIFIED");
    assert.equal(sourceFromPb(newer), "UNSPECIFIED");
    assert.equal(reasonFromPb(newer), "UNSPECIFIED");
    assert.equal(statusFromPb(pb.ConfigStatus.WARNING), "WARNING");
  });

  test("a config with an unknown stage or provider kind is unrepresentable, and says why", () => {
    const message = (stageType: number, providerKind: number): pb.StageConfig =>
      create(pb.StageConfigSchema, { stageType, providerKind, revision: 7n });
    const unknownProvider = configFromPb(message(pb.StageType.VOICE, 99));
    assert.ok(unknownProvider instanceof UnrepresentableConfig);
    assert.deepEqual({ ...unknownProvider }, { stage: "VOICE", field: "providerKind", value: 99, revision: 7 });
    assert.equal(String(unknownProvider), "the VOICE config at revision 7 has providerKind=99, a value this client does not know");
    const unknownStage = configFromPb(message(99, pb.ProviderKind.OPENAI));
    assert.ok(unknownStage instanceof UnrepresentableConfig);
    assert.equal(unknownStage.stage, undefined);
    assert.equal(unknownStage.field, "stageType");
    assert.ok(configFromPb(message(pb.StageType.VOICE, pb.ProviderKind.SPEECHKIT)) instanceof StageConfig);
  });
});

describe("fallback routes", () => {
  const message = create(pb.StageConfigSchema, {
    stageType: pb.StageType.POEM,
    providerKind: pb.ProviderKind.GEMINI,
    apiKey: "AIza-primary-secret-0001",
    model: "gemini-2.5-flash",
    revision: 9n,
    fallbacks: [
      { providerKind: 99 as pb.ProviderKind, apiKey: "future-secret-0002", model: "future" },
      {
        providerKind: pb.ProviderKind.OPENAI,
        apiKey: "sk-fallback-secret-0003",
        model: "gpt-4o-mini",
        options: { tier: "x" },
        status: pb.ConfigStatus.ACTIVE,
        apiKeyFingerprint: "bb22",
      },
    ],
  });

  test("arrive in order with the server's numbering; an unknown provider kind is skipped", () => {
    const config = configFromPb(message);
    assert.ok(config instanceof StageConfig);
    assert.equal(config.fallbacks.length, 1);
    const [route] = config.fallbacks;
    assert.ok(route instanceof Route);
    assert.deepEqual(
      [route.index, route.providerKind, route.apiKey, route.model, route.status, route.apiKeyFingerprint],
      [2, "OPENAI", "sk-fallback-secret-0003", "gpt-4o-mini", "ACTIVE", "bb22"],
    );
    assert.deepEqual({ ...route.options }, { tier: "x" });
    assert.ok(Object.isFrozen(config.fallbacks) && Object.isFrozen(route) && Object.isFrozen(route.options));
    for (const text of [inspect(config), String(config), JSON.stringify(config), inspect(route), JSON.stringify(route)]) {
      assert.ok(!text.includes("secret"), text);
    }
    assert.ok(JSON.stringify(config).includes("…0003"));
  });

  test("an older server's config has none", () => {
    const older = configFromPb(create(pb.StageConfigSchema, { stageType: pb.StageType.VOICE, providerKind: pb.ProviderKind.SPEECHKIT }));
    assert.ok(older instanceof StageConfig);
    assert.deepEqual(older.fallbacks, []);
  });
});
