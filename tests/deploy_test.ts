/**
 * deploy/: the systemd unit is checked by `systemd-analyze` (verify, and its security exposure), the
 * Dockerfile by hadolint, where each can be had here; a test that cannot run says why in its name.
 * Both files are also read for what they promise, and the Dockerfile's HEALTHCHECK command is run
 * against a real server.
 */
import assert from "node:assert/strict";
import { PERMISSIONS } from "../tools/compile.ts";

/** The repository root (not from helpers.ts: this test needs none of the server's modules in-process). */
const ROOT = new URL("../", import.meta.url).pathname;
const dec = new TextDecoder();
const UNIT = await Deno.readTextFile(`${ROOT}deploy/asynctask.service`);
const DOCKERFILE = await Deno.readTextFile(`${ROOT}deploy/Dockerfile`);

async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(cmd, { args, ...opts, stdin: "null", stdout: "piped", stderr: "piped" })
    .output();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Whether `program` is on PATH. */
async function have(program: string): Promise<boolean> {
  return Deno.build.os !== "windows" && (await run("sh", ["-c", `command -v ${program}`])).code === 0;
}

/** The unit's `Key=value` settings (the last one wins, as in systemd, except for lists). */
function unitSettings(text: string): Map<string, string> {
  const settings = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m) settings.set(m[1], m[2]);
  }
  return settings;
}

/** The JSON array of a Dockerfile instruction in exec form (`HEALTHCHECK … CMD [...]`, `ENTRYPOINT [...]`). */
function execForm(instruction: string): string[] {
  const joined = DOCKERFILE.replace(/\\\n\s*/g, " ");
  const m = new RegExp(`^${instruction}\\b[^\\n]*?(\\[[^\\n]*\\])\\s*$`, "m").exec(joined);
  assert.ok(m, `the Dockerfile has ${instruction} in exec form`);
  return JSON.parse(m[1]);
}

const systemdAnalyze = await have("systemd-analyze");
Deno.test({
  name: systemdAnalyze
    ? "deploy/asynctask.service passes systemd-analyze verify, and its security exposure is at most 3.5"
    : "deploy/asynctask.service: systemd-analyze — SKIPPED: systemd-analyze is not installed here (Debian: systemd)",
  ignore: !systemdAnalyze,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "asynctask-unit-" });
    try {
      // verify checks that ExecStart's program exists: point it at a stand-in of the installed binary.
      await Deno.writeTextFile(`${dir}/asynctask`, "#!/bin/sh\n", { mode: 0o755 });
      const unit = `${dir}/asynctask.service`;
      await Deno.writeTextFile(unit, UNIT.replaceAll("/usr/local/bin/asynctask", `${dir}/asynctask`));
      const verify = await run("systemd-analyze", ["verify", unit]);
      // verify exits 0 even for an unknown key or a bad value, which it only prints: any output is a failure.
      assert.equal(verify.code, 0, verify.stderr);
      assert.equal((verify.stdout + verify.stderr).trim(), "", "systemd-analyze verify printed warnings");
      const security = await run("systemd-analyze", ["security", "--offline=yes", "--threshold=35", unit]);
      const level = /Overall exposure level for [^:]+: ([\d.]+ \S+)/.exec(security.stdout)?.[1];
      assert.equal(security.code, 0, `exposure ${level ?? "?"} is above 3.5:\n${security.stdout}${security.stderr}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("deploy/asynctask.service: non-root, the documented ExecStart, state, restarts, a graceful stop", async () => {
  const s = unitSettings(UNIT);
  assert.equal(s.get("User"), "asynctask");
  assert.equal(s.get("DynamicUser"), "yes");
  assert.equal(
    s.get("ExecStart"),
    "/usr/local/bin/asynctask serve --config /etc/asynctask/asynctask.json --journal /var/lib/asynctask/journal.db",
  );
  assert.equal(s.get("StateDirectory"), "asynctask");
  assert.equal(s.get("Restart"), "on-failure");
  assert.equal(s.get("KillSignal"), "SIGTERM");
  assert.match(s.get("EnvironmentFile") ?? "", /^-?\/etc\/asynctask\/.+\.env$/);
  for (const [key, value] of [["NoNewPrivileges", "yes"], ["ProtectSystem", "strict"], ["ProtectHome", "yes"]]) {
    assert.equal(s.get(key), value, key);
  }
  assert.equal(s.get("PrivateTmp"), "yes");
  assert.ok(!s.has("MemoryDenyWriteExecute"), "V8's JIT needs writable, executable memory");
  // TimeoutStopSec must leave the server its --shutdown-timeout, as `serve --help` states the default.
  const help = await run(Deno.execPath(), ["run", "-A", `${ROOT}main.ts`, "serve", "--help"], {
    env: { NO_COLOR: "1" },
  });
  assert.equal(help.code, 0, help.stderr);
  const shutdown = Number(/--shutdown-timeout\b[^\n]*?(?:\n[^\n]*?)?\(default: (\d+)s\)/.exec(help.stdout)?.[1]);
  assert.ok(shutdown > 0, "serve --help states --shutdown-timeout's default in seconds");
  const stop = Number(/^(\d+)s$/.exec(s.get("TimeoutStopSec") ?? "")?.[1]);
  assert.ok(
    stop > shutdown && stop <= shutdown + 30,
    `TimeoutStopSec=${stop}s against --shutdown-timeout ${shutdown}s`,
  );
});

const hadolint = await have("hadolint");
Deno.test({
  name: hadolint
    ? "deploy/Dockerfile passes hadolint"
    : "deploy/Dockerfile: hadolint — SKIPPED: hadolint is not installed here (Debian 12 does not package it, and " +
      "npm's `hadolint` is a wrapper without the program)",
  ignore: !hadolint,
  async fn() {
    const r = await run("hadolint", [`${ROOT}deploy/Dockerfile`]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  },
});

Deno.test("deploy/Dockerfile: the pinned Deno, the lock file, a non-root user, port 9501, the server's permissions", async () => {
  const pinned = JSON.parse(await Deno.readTextFile(`${ROOT}tools/package.json`)).devDependencies.deno;
  assert.equal(/^ARG DENO_VERSION=(\S+)$/m.exec(DOCKERFILE)?.[1], pinned, "the Deno of tools/package.json");
  assert.match(DOCKERFILE, /^FROM denoland\/deno:\$\{DENO_VERSION\}$/m);
  assert.match(DOCKERFILE, /^RUN deno install --frozen$/m);
  const users = [...DOCKERFILE.matchAll(/^USER (\S+)$/gm)].map((m) => m[1]);
  assert.ok(users.length > 0 && !["root", "0"].includes(users.at(-1)!), `runs as ${users.at(-1)}`);
  assert.match(DOCKERFILE, /^EXPOSE 9501$/m);
  const entry = execForm("ENTRYPOINT");
  assert.deepEqual(entry.slice(0, 4), ["deno", "run", "--cached-only", "--frozen"]);
  for (const p of PERMISSIONS) assert.ok(entry.includes(p), `ENTRYPOINT lacks ${p}, which the binary has`);
  const cmd = execForm("CMD");
  assert.deepEqual(cmd.slice(0, 3), ["serve", "--host", "0.0.0.0"]);
  assert.match(DOCKERFILE, /ASYNCTASK_TOKEN/, "says to set a token when listening on 0.0.0.0");
});

/** `main.ts serve --port 0` from source (with `args`, in `cwd`); resolves with its port once it listens. */
async function serveFromSource(env: Record<string, string>, args: string[] = [], cwd?: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}main.ts`, "serve", ...args, "--port", "0"],
    env: { NO_COLOR: "1", ...env },
    ...(cwd ? { cwd } : {}),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let log = "";
  const port = Promise.withResolvers<number>();
  const drained = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      log += chunk;
      const m = /listening on [\d.]+:(\d+)/.exec(log);
      if (m) port.resolve(Number(m[1]));
    }
    port.reject(new Error(`serve exited before listening:\n${log}`));
  })();
  const timer = setTimeout(() => port.reject(new Error(`serve did not listen within 20 s:\n${log}`)), 20_000);
  try {
    return {
      port: await port.promise,
      async stop() {
        child.kill("SIGTERM");
        await child.status;
        await drained;
      },
    };
  } catch (e) {
    child.kill("SIGKILL");
    await child.status;
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("deploy/Dockerfile: its HEALTHCHECK command passes against a live server (with a token) and fails without one", async () => {
  const check = execForm("HEALTHCHECK");
  assert.equal(check[0], "deno");
  assert.ok(check.includes("/ping"), "the health check pings");
  // As in the container: from the source tree, the token in the environment, the server on the default port
  // (here a free one, given with --port, since the health check names none).
  const healthcheck = (port: number, token: string) =>
    run(Deno.execPath(), [...check.slice(1), "--port", String(port)], {
      cwd: ROOT,
      env: { NO_COLOR: "1", ASYNCTASK_TOKEN: token },
    });
  const server = await serveFromSource({ ASYNCTASK_TOKEN: "deploy-test-token" });
  try {
    const ok = await healthcheck(server.port, "deploy-test-token");
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /PONG/);
    const refused = await healthcheck(server.port, "wrong-token");
    assert.notEqual(refused.code, 0, "a wrong token is unhealthy: " + refused.stdout);
  } finally {
    await server.stop();
  }
  const down = await healthcheck(server.port, "deploy-test-token");
  assert.notEqual(down.code, 0, "no server is unhealthy");
});

Deno.test("deploy: the config the README and the unit install to /etc/asynctask starts a server there, alone", async () => {
  const readme = await Deno.readTextFile(`${ROOT}deploy/README.md`);
  const installed = (text: string) =>
    [...text.matchAll(/install -m 644 (\S+) \/etc\/asynctask\/asynctask\.json/g)].map((m) => m[1]);
  assert.deepEqual(installed(readme), ["deploy/asynctask.json"]);
  assert.deepEqual(installed(UNIT), ["deploy/asynctask.json"]);
  // Copied on its own, as the install line does, into an empty directory, and started from elsewhere
  // (the unit's WorkingDirectory is /var/lib/asynctask): every path it names must resolve.
  const etc = await Deno.makeTempDir({ prefix: "asynctask-etc-" });
  const state = await Deno.makeTempDir({ prefix: "asynctask-state-" });
  try {
    await Deno.copyFile(`${ROOT}deploy/asynctask.json`, `${etc}/asynctask.json`);
    const server = await serveFromSource({ ASYNCTASK_TOKEN: "" }, ["--config", `${etc}/asynctask.json`], state);
    try {
      const ping = await run(Deno.execPath(), [
        "run",
        "-A",
        `${ROOT}main.ts`,
        "client",
        "--port",
        String(server.port),
        "--send",
        "/ping",
      ], { env: { NO_COLOR: "1" } });
      assert.equal(ping.code, 0, ping.stdout + ping.stderr);
      assert.match(ping.stdout, /PONG/);
    } finally {
      await server.stop();
    }
  } finally {
    await Deno.remove(etc, { recursive: true });
    await Deno.remove(state, { recursive: true });
  }
});
