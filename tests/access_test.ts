/**
 * Who may connect: `--token` (constant-time, never logged) and TLS, through real sockets, real
 * certificates made with openssl, and the real client as a child process.
 */
import assert from "node:assert/strict";
import { LineClient, makeCertificates, opensslMissing, runCli, spawnServe, startServer } from "./helpers.ts";

const noOpenssl = await opensslMissing();

Deno.test("--token: the first request must be a good /auth; anything else gets ERROR unauthorized and the connection closes", async () => {
  const server = await startServer({ token: "s3cret-token", defaultTask: "echo" });
  try {
    const noAuth = await LineClient.connect(server.addr.port);
    await noAuth.send("/ping", "/ping");
    assert.match(await noAuth.next(), /^ERROR unauthorized this server needs a token first: send \/auth <token>/);
    await noAuth.closedByServer();
    assert.equal(noAuth.lines.length, 1, "nothing after the refusal");
    await noAuth.close();

    const wrong = await LineClient.connect(server.addr.port);
    await wrong.send('{"cmd":"auth","token":"guess","id":1}');
    assert.equal(
      await wrong.next(),
      '{"type":"error","id":1,"error":{"code":"unauthorized","message":"wrong token; closing"}}',
    );
    await wrong.closedByServer();
    await wrong.close();

    const good = await LineClient.connect(server.addr.port);
    await good.send("/auth s3cret-token", "hello", "/auth s3cret-token");
    assert.deepEqual(await good.take(4), ["OK", "ACCEPTED 1 echo queued", "OK", "DONE 1 hello"]);
    await good.close();
    assert.equal(server.stats().accepted, 1, "nothing ran for the refused connections");
  } finally {
    await server.shutdown(5000);
  }
});

Deno.test("--token from ASYNCTASK_TOKEN: the client authenticates; a wrong token exits 1 with a hint; the token is never logged", async () => {
  const server = await spawnServe(["--log-level", "debug", "--task", "echo"], undefined, {
    env: { ASYNCTASK_TOKEN: "hunter2-token" },
  });
  try {
    const port = String(server.port);
    const ok = await runCli(["client", "--port", port, "--send", "hi"], { env: { ASYNCTASK_TOKEN: "hunter2-token" } });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, "OK\nACCEPTED 1 echo queued\nDONE 1 hi\n");
    const bad = await runCli(["client", "--port", port, "--token", "nope-token", "--send", "hi"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /^ERROR unauthorized wrong token; closing/);
    assert.match(bad.stderr, /the server refused the token — check --token or ASYNCTASK_TOKEN/);
  } finally {
    server.child.kill("SIGTERM");
    const { code, log } = await server.exited();
    assert.equal(code, 0);
    assert.ok(!log.includes("hunter2-token") && !log.includes("nope-token"), "no token in the log");
    assert.match(log, /token required/);
  }
});

Deno.test("listening beyond loopback without a token logs a warning that says how to set one", async () => {
  const server = await spawnServe(["--host", "0.0.0.0"]);
  server.child.kill("SIGTERM");
  const { log } = await server.exited();
  assert.match(
    log,
    /listening on 0\.0\.0\.0 without a token: anyone who can reach port \d+ can run tasks here\. Set --token \(or the ASYNCTASK_TOKEN environment variable\)/,
  );
});

Deno.test({
  name:
    "TLS: --tls-cert/--tls-key serve TLS; client --tls --ca works; plain TCP and untrusted clients are refused, the server lives" +
    (noOpenssl ? ` — SKIPPED: ${noOpenssl}` : ""),
  ignore: noOpenssl !== undefined,
}, async () => {
  const dir = await Deno.makeTempDir();
  try {
    const certs = await makeCertificates(dir);
    const server = await spawnServe(["--tls-cert", certs.paths.cert, "--tls-key", certs.paths.key, "--token", "t0ken"]);
    try {
      const port = String(server.port);
      const ok = await runCli([
        "client",
        "--port",
        port,
        "--tls",
        "--ca",
        certs.paths.ca,
        "--token",
        "t0ken",
        "--send",
        "13800138000",
      ]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /^OK\nACCEPTED 1 sending SMS to 13800138000/);

      const untrusted = await runCli(["client", "--port", port, "--tls", "--send", "x"]);
      assert.equal(untrusted.code, 2);
      assert.match(
        untrusted.stderr,
        /cannot connect to 127\.0\.0\.1:\d+ with TLS: .* does --ca name the certificate authority/,
      );

      // A plain-text client speaking to the TLS port gets nothing useful, and does no harm.
      const plain = await LineClient.connect(server.port);
      await plain.send("/ping");
      await plain.closedByServer();
      assert.ok(!plain.lines.includes("PONG"));
      await plain.close();

      const c = await LineClient.connectTls(server.port, certs.ca);
      await c.send("/auth t0ken", "/ping");
      assert.deepEqual(await c.take(2), ["OK", "PONG"]);
      await c.close();
    } finally {
      server.child.kill("SIGTERM");
      assert.equal((await server.exited()).code, 0);
    }
    const mismatch = await runCli(["serve", "--port", "0", "--tls-cert", certs.paths.cert]);
    assert.equal(mismatch.code, 2);
    assert.match(mismatch.stderr, /--tls-cert and --tls-key go together/);
    const badPem = await runCli([
      "serve",
      "--port",
      "0",
      "--tls-cert",
      certs.paths.ca.replace("ca.pem", "ext.cnf"),
      "--tls-key",
      certs.paths.key,
    ]);
    assert.equal(badPem.code, 2);
    assert.match(badPem.stderr, /cannot serve TLS: .* check that --tls-cert is a PEM certificate/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
