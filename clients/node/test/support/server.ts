/**
 * The real Python server (`python -m stageconfig_server serve`) in a child process,
 * a Python caller for changes "made from Python", and small waiting helpers that wait
 * on conditions with deadlines (never fixed sleeps).
 */

import { spawn, execFile, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import type { ConfigChangeEvent, ConfigWatcher, WatcherState } from "../../src/index.js";

const run = promisify(execFile);

/** The repository root: the nearest ancestor holding pyproject.toml. */
export const REPO_ROOT: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "pyproject.toml"))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error("cannot find the repository root (pyproject.toml)");
    dir = parent;
  }
  return dir;
})();

/** The project's Python (override with STAGECONFIG_TEST_PYTHON). */
export const PYTHON: string = process.env["STAGECONFIG_TEST_PYTHON"] ?? join(REPO_ROOT, ".venv", "bin", "python");

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;

/** A scratch directory removed by `dispose()`. */
export class Scratch {
  readonly path = mkdtempSync(join(tmpdir(), "stageconfig-node-"));

  /** Removes the directory. */
  dispose(): void {
    rmSync(this.path, { recursive: true, force: true });
  }
}

/** TLS files for a server on 127.0.0.1 (self-signed, made with openssl). */
export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
}

/** A self-signed certificate for IP 127.0.0.1 in `dir`. */
export async function makeTlsFiles(dir: string): Promise<TlsFiles> {
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  await run("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
    "-addext", "subjectAltName=IP:127.0.0.1",
  ]);
  chmodSync(key, 0o600);
  return { cert, key };
}

/** How to start a server. */
export interface ServerOptions {
  /** Directory of the SQLite database (kept across restarts). */
  readonly dataDir: string;
  /** Port to bind; 0 picks a free one. */
  readonly port?: number;
  /** `STAGECONFIG_TOKENS` entries (`name:role:secret`). */
  readonly tokens?: readonly string[];
  readonly tls?: TlsFiles;
}

/** A running server process. */
export class PythonServer {
  private exited: Promise<void>;

  private constructor(
    private readonly child: ChildProcess,
    /** The port it listens on. */
    readonly port: number,
    private readonly stderrTail: () => string,
  ) {
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
  }

  /** `127.0.0.1:<port>`. */
  get target(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Starts a server and resolves once it prints that it listens (or rejects with its stderr). */
  static start(options: ServerOptions): Promise<PythonServer> {
    const env: Record<string, string> = {
      // A clean environment: no legacy provider keys leak in from the developer's shell.
      PATH: process.env["PATH"] ?? "/usr/bin:/bin",
      HOME: process.env["HOME"] ?? options.dataDir,
      PYTHONUNBUFFERED: "1",
      STAGECONFIG_ADDRESS: `127.0.0.1:${options.port ?? 0}`,
      STAGECONFIG_DATABASE_URL: `sqlite+aiosqlite:///${join(options.dataDir, "db.sqlite")}`,
      ADMIN_SECRET_KEY: "node-client-tests-secret",
      STAGECONFIG_HEARTBEAT_SECONDS: "1",
      STAGECONFIG_LOG_LEVEL: "WARNING",
    };
    if (options.tokens !== undefined) env["STAGECONFIG_TOKENS"] = options.tokens.join(",");
    if (options.tls !== undefined) {
      env["STAGECONFIG_TLS_CERT"] = options.tls.cert;
      env["STAGECONFIG_TLS_KEY"] = options.tls.key;
    }
    const child = spawn(PYTHON, ["-m", "stageconfig_server", "serve"], {
      cwd: options.dataDir,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-4000);
    });
    return new Promise((resolvePromise, reject) => {
      let stdout = "";
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`server did not start within ${START_TIMEOUT_MS} ms:\n${stderr}`));
      }, START_TIMEOUT_MS);
      const onExit = (code: number | null): void => {
        clearTimeout(timer);
        reject(new Error(`server exited (${code}) before listening:\n${stderr}`));
      };
      child.once("exit", onExit);
      child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
        stdout += chunk;
        const match = /stageconfig listening on [^\s:]+:(\d+)/.exec(stdout);
        if (match?.[1] !== undefined) {
          clearTimeout(timer);
          child.removeListener("exit", onExit);
          child.stdout?.removeAllListeners("data").resume();
          resolvePromise(new PythonServer(child, Number(match[1]), () => stderr));
        }
      });
    });
  }

  /** SIGTERM (graceful), then SIGKILL if it does not exit in time. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
  }

  /** The last lines of the server's stderr, for failure messages. */
  logTail(): string {
    return this.stderrTail();
  }
}

/** How a Python caller reaches the server. */
export interface PythonCallOptions {
  readonly target: string;
  readonly token?: string;
  /** CA (the self-signed cert) for a TLS server. */
  readonly caFile?: string;
}

const PYTHON_UPDATE = `
import json, sys
import grpc
from stageconfig_contract.v1 import stage_config_pb2 as pb, stage_config_pb2_grpc as rpc
a = json.loads(sys.argv[1])
if a.get("ca"):
    channel = grpc.secure_channel(a["target"], grpc.ssl_channel_credentials(open(a["ca"], "rb").read()))
else:
    channel = grpc.insecure_channel(a["target"])
metadata = [("authorization", "Bearer " + a["token"])] if a.get("token") else []
with channel:
    reply = rpc.StageConfigServiceStub(channel).UpdateConfig(
        pb.UpdateConfigRequest(
            stage_type=pb.StageType.Value("STAGE_TYPE_" + a["stage"]),
            provider_kind=pb.ProviderKind.Value("PROVIDER_KIND_" + a["provider"]),
            api_key=a["api_key"],
            model=a["model"],
        ),
        metadata=metadata,
        timeout=15,
    )
print(reply.config.revision)
`;

/** Makes a change from Python (the generated Python stubs); resolves to the new revision. */
export async function updateFromPython(
  call: PythonCallOptions,
  change: { stage: string; provider: string; apiKey: string; model: string },
): Promise<number> {
  const argument = JSON.stringify({
    target: call.target,
    token: call.token,
    ca: call.caFile,
    stage: change.stage,
    provider: change.provider,
    api_key: change.apiKey,
    model: change.model,
  });
  const { stdout } = await run(PYTHON, ["-c", PYTHON_UPDATE, argument], { cwd: REPO_ROOT, timeout: 30_000 });
  return Number(stdout.trim());
}

/** Resolves when `watcher` is in `state` (at once if it is); rejects after `timeoutMs`. */
export function waitForState(watcher: ConfigWatcher, state: WatcherState, timeoutMs: number): Promise<void> {
  if (watcher.state === state) return Promise.resolve();
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`watcher not ${state} within ${timeoutMs} ms (state ${watcher.state}; ${watcher.lastError?.message})`));
    }, timeoutMs);
    const off = watcher.onStateChange((now) => {
      if (now === state) {
        clearTimeout(timer);
        off();
        resolvePromise();
      }
    });
  });
}

/** Resolves with the first change event matching `predicate`; rejects after `timeoutMs`. */
export function waitForChange(
  watcher: ConfigWatcher,
  predicate: (event: ConfigChangeEvent) => boolean,
  timeoutMs: number,
): Promise<ConfigChangeEvent> {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no matching change within ${timeoutMs} ms (state ${watcher.state}, revision ${watcher.revision})`));
    }, timeoutMs);
    const off = watcher.onChange((event) => {
      if (predicate(event)) {
        clearTimeout(timer);
        off();
        resolvePromise(event);
      }
    });
  });
}
