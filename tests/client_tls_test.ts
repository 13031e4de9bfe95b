/**
 * A plain-TCP client on a TLS port: it says the port speaks TLS and which flags to add, and exits
 * 2 — scripted, and interactive before anything is typed — instead of printing the TLS alert's
 * bytes. Against a real TLS server with a certificate made by `openssl`; where `openssl` is
 * missing the tests are reported as ignored, with the reason in their names.
 */
import assert from "node:assert/strict";
import { makeCertificates, NO_TERMINAL, openTerminal, ROOT, runCli, spawnServe } from "./helpers.ts";

async function hasOpenssl(): Promise<boolean> {
  try {
    return (await new Deno.Command("openssl", { args: ["version"], stdout: "null", stderr: "null" }).output()).success;
  } catch {
    return false;
  }
}

const openssl = await hasOpenssl();
const skipped = openssl ? "" : " — SKIPPED: openssl is not installed (it makes the test certificate)";

/** Runs `fn` with the port of a TLS server (certificate signed by a test CA), then stops the server. */
async function withTlsServer(fn: (port: number, caPath: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    const certs = await makeCertificates(dir);
    const server = await spawnServe(["--tls-cert", certs.paths.cert, "--tls-key", certs.paths.key]);
    try {
      await fn(server.port, certs.paths.ca);
    } finally {
      server.child.kill("SIGTERM");
      assert.equal((await server.exited()).code, 0, "the server lives through it");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: `client --send on a TLS port without --tls: "this port speaks TLS: add --tls", exit 2, no raw bytes${skipped}`,
  ignore: !openssl,
  fn: () =>
    withTlsServer(async (port, ca) => {
      const r = await runCli(["client", "--port", String(port), "--send", "13800138000"]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, "", "nothing of the TLS alert is printed");
      assert.equal(
        r.stderr,
        `./deno task client: 127.0.0.1:${port} speaks TLS: add --tls (and --ca <ca.pem> for a self-signed certificate)\n`,
      );
      // With the flags the message names, the same command works.
      const ok = await runCli(["client", "--port", String(port), "--tls", "--ca", ca, "--send", "13800138000"]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /^ACCEPTED 1 sending SMS to 13800138000/);
    }),
});

Deno.test({
  name: `interactive client on a TLS port: told before anything is typed, exit 2${skipped}${
    NO_TERMINAL ? ` — SKIPPED: ${NO_TERMINAL}` : ""
  }`,
  ignore: !openssl || NO_TERMINAL !== "",
  fn: () =>
    withTlsServer(async (port) => {
      const term = await openTerminal(
        `env -u LC_ALL -u LC_MESSAGES LANG=C.UTF-8 ${Deno.execPath()} run -A ${ROOT}main.ts client --port ${port}`,
      );
      try {
        await term.waitFor(/127\.0\.0\.1:\d+ speaks TLS: add --tls \(and --ca <ca\.pem> for a self-signed/, "the hint");
        assert.equal((await term.status).code, 2);
        assert.ok(!term.screen.includes("\x15\x03"), "no TLS alert bytes on the terminal");
      } finally {
        await term.close();
      }
    }),
});
