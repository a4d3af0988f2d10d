// The TypeScript client against the real server binary (simulated agent, state in memory),
// over grpc-web on HTTP/1.1 (as browsers speak it) and gRPC on HTTP/2, on the same port.
// Run by scripts/test-clients (which builds the binary); alone, in clients/typescript:
//   cargo build --bin claude-swarm && npm test
// SWARM_TEST_BIN overrides the binary's path.

import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import {
  Code,
  ConnectError,
  FailureClass,
  Priority,
  SwarmClient,
  TaskStatus,
  WorkflowStatus,
} from "../src/index.js";

// dist/test/ -> the repository.
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");
const BIN = process.env.SWARM_TEST_BIN ?? resolve(ROOT, "target/debug/claude-swarm");
// Every wait in these tests is bounded by this many milliseconds.
const BOUND = 60_000;

/** A running `claude-swarm serve` and where it listens. */
interface Server {
  process: ChildProcess;
  baseUrl: string;
}

/** Starts the server on a free port (with `env` added), and reads its address from its log. */
async function startServer(env: Record<string, string> = {}): Promise<Server> {
  const log: string[] = [];
  const process_ = spawn(
    BIN,
    ["serve", "--agent", "simulated", "--in-memory", "--listen", "127.0.0.1:0"],
    {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, SWARM_LOG: "claude_swarm=info", ...env },
    },
  );
  const spawnError = once(process_, "error").then(([error]) => {
    throw new Error(`${BIN} did not start (run \`cargo build --bin claude-swarm\`): ${error}`);
  });
  // The address comes from the server's log line; the rest of the log keeps being read so
  // the server never blocks on a full pipe.
  const lines = createInterface({ input: process_.stderr! });
  const address = new Promise<string>((resolveAddress, reject) => {
    lines.on("line", (line) => {
      log.push(line);
      const match = /\baddress=(\S+)/.exec(line);
      if (match) resolveAddress(match[1]);
    });
    lines.on("close", () => reject(new Error(`the server logged no address:\n${log.join("\n")}`)));
  });
  const timer = setTimeout(() => process_.kill(), BOUND);
  try {
    return { process: process_, baseUrl: `http://${await Promise.race([address, spawnError])}` };
  } finally {
    clearTimeout(timer);
  }
}

async function stopServer(server: Server | undefined): Promise<void> {
  const child = server?.process;
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), BOUND);
    await exited;
    clearTimeout(timer);
  }
}

let server: Server | undefined;
let baseUrl: string;

before(async () => {
  server = await startServer();
  baseUrl = server.baseUrl;
});

after(() => stopServer(server));

for (const protocol of ["grpc-web", "grpc"] as const) {
  describe(`over ${protocol}`, () => {
    test("submit and wait return the result", { timeout: BOUND }, async () => {
      const swarm = new SwarmClient(baseUrl, { protocol, timeoutMs: BOUND });
      const submitted = await swarm.submit(`hello from typescript (${protocol}) sim:cost=0.25`, {
        priority: Priority.HIGH,
        labels: { suite: "typescript" },
      });
      assert.ok(submitted.id);
      assert.equal(submitted.priority, Priority.HIGH);

      // StreamEvents (server streaming) until the task's terminal event.
      const done = await swarm.wait(submitted.id, { timeoutMs: BOUND });
      assert.equal(done.status, TaskStatus.COMPLETED, JSON.stringify(done.error));
      assert.equal(done.result?.text, `Simulated answer to: hello from typescript (${protocol})`);
      assert.ok(done.result?.sessionId);
      assert.equal(done.result?.costUsd, 0.25);
      assert.equal(done.labels.suite, "typescript");

      const fetched = await swarm.get(submitted.id);
      assert.equal(fetched.status, TaskStatus.COMPLETED);
      assert.equal(fetched.result?.sessionId, done.result?.sessionId);
    });

    test("an empty prompt fails with INVALID_ARGUMENT naming the field", { timeout: BOUND }, async () => {
      const swarm = new SwarmClient(baseUrl, { protocol, timeoutMs: BOUND });
      await assert.rejects(swarm.submit(""), (error: unknown) => {
        assert.ok(error instanceof ConnectError, String(error));
        assert.equal(error.code, Code.InvalidArgument);
        assert.match(error.rawMessage, /task\.prompt/);
        return true;
      });
      await assert.rejects(swarm.get("no-such-task"), (error: unknown) => {
        assert.equal(ConnectError.from(error).code, Code.NotFound);
        return true;
      });
    });
  });
}

test("a workflow with a dependency runs to its end", { timeout: BOUND }, async () => {
  const swarm = new SwarmClient(baseUrl, { timeoutMs: BOUND });
  const workflow = await swarm.runWorkflow(
    [
      "name: typescript client workflow",
      "tasks:",
      "  - id: first",
      '    prompt: "sim:reply={{ vars.word }}"',
      "  - id: second",
      '    prompt: "Use {{ tasks.first.result }}"',
      "    depends_on: [first]",
      "variables:",
      "  word: alpha",
    ].join("\n"),
    { word: "gamma" },
    { timeoutMs: BOUND },
  );
  assert.equal(workflow.status, WorkflowStatus.COMPLETED);
  assert.equal(workflow.taskCounts?.completed, 2n);
  assert.deepEqual(Object.values(workflow.outputs), ["Simulated answer to: Use gamma"]);
});

test("cancel stops a hanging task and a wait is bounded", { timeout: BOUND }, async () => {
  const swarm = new SwarmClient(baseUrl, { timeoutMs: BOUND });
  const task = await swarm.submit("never answers sim:hang");
  await assert.rejects(swarm.wait(task.id, { timeoutMs: 300 }), (error: unknown) => {
    assert.equal(ConnectError.from(error).code, Code.DeadlineExceeded);
    return true;
  });
  const cancelled = await swarm.cancel(task.id);
  assert.equal(cancelled.status, TaskStatus.CANCELLED);
  assert.equal(cancelled.failureClass, FailureClass.CANCELLED);
  assert.equal((await swarm.wait(task.id, { timeoutMs: BOUND })).status, TaskStatus.CANCELLED);
});

describe("a server with API keys", () => {
  const key = "typescript-client-key-0123456789";
  let keyed: Server | undefined;
  before(async () => {
    keyed = await startServer({ SWARM_API_KEYS: `typescript:read:${key}` });
  });
  after(() => stopServer(keyed));

  for (const protocol of ["grpc-web", "grpc"] as const) {
    test(`wants a key, and the client sends it (${protocol})`, { timeout: BOUND }, async () => {
      const swarm = new SwarmClient(keyed!.baseUrl, { protocol, apiKey: key, timeoutMs: BOUND });
      const status = await swarm.swarm.getStatus({});
      assert.ok(status.version);
      // `read` may not submit: that takes `operate`.
      await assert.rejects(swarm.submit("no"), (error: unknown) => {
        assert.equal(ConnectError.from(error).code, Code.PermissionDenied);
        assert.match(ConnectError.from(error).rawMessage, /needs operate/);
        return true;
      });
      const anonymous = new SwarmClient(keyed!.baseUrl, { protocol, timeoutMs: BOUND });
      await assert.rejects(anonymous.swarm.getStatus({}), (error: unknown) => {
        assert.equal(ConnectError.from(error).code, Code.Unauthenticated);
        return true;
      });
    });
  }
});

describe("a server with TLS", () => {
  const dir = mkdtempSync(join(tmpdir(), "swarm-tls-"));
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  let tls: Server | undefined;
  before(async () => {
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
      "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert,
    ], { stdio: "ignore" });
    chmodSync(key, 0o600);
    tls = await startServer({ SWARM_TLS_CERT: cert, SWARM_TLS_KEY: key });
  });
  after(async () => {
    await stopServer(tls);
    rmSync(dir, { recursive: true, force: true });
  });

  for (const protocol of ["grpc-web", "grpc"] as const) {
    test(`is reached over https with the certificate trusted (${protocol})`, { timeout: BOUND }, async () => {
      const port = new URL(tls!.baseUrl).port;
      const swarm = new SwarmClient(`https://localhost:${port}`, {
        protocol,
        caCert: readFileSync(cert),
        timeoutMs: BOUND,
      });
      const task = await swarm.submit(`over tls (${protocol})`);
      assert.equal((await swarm.wait(task.id, { timeoutMs: BOUND })).status, TaskStatus.COMPLETED);
      // Not trusting the certificate, the client is refused at the handshake.
      const untrusting = new SwarmClient(`https://localhost:${port}`, { protocol, timeoutMs: BOUND });
      await assert.rejects(untrusting.swarm.getStatus({}));
    });
  }
});
