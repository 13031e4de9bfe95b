/**
 * Connections that hold a slot without using it — a TLS handshake never finished, a token never
 * sent, a byte a second — and a token guessed over and over: real sockets, real TLS, a real
 * server process where its log is read.
 */
import assert from "node:assert/strict";
import { eventually, LineClient, makeCertificates, runCli, spawnServe, startServer } from "./helpers.ts";

// Spawning a program that is not installed throws at once, not in the promise: hence the try.
const openssl = await (async () => {
  try {
    return (await new Deno.Command("openssl", { args: ["version"], stdout: "null", stderr: "null" }).output()).success;
  } catch {
    return false;
  }
})();

/** Resolves true when the server closes `conn` (EOF or reset) within `ms`. */
async function closedWithin(conn: Deno.Conn, ms: number): Promise<boolean> {
  const timer = setTimeout(() => conn.close(), ms);
  try {
    const n = await conn.read(new Uint8Array(64));
    return n === null;
  } catch {
    return false; // closed by the timer above: the server kept it open
  } finally {
    clearTimeout(timer);
  }
}

Deno.test({
  name: openssl
    ? "TLS: connections that never send a ClientHello are closed after --handshake-timeout; a real client gets in"
    : "TLS handshake deadline: SKIPPED — openssl is not on this machine (it makes the test certificate)",
  ignore: !openssl,
  async fn() {
    const dir = await Deno.makeTempDir();
    const { ca, cert, key } = await makeCertificates(dir);
    const server = await startServer({ tls: { cert, key }, handshakeTimeoutMs: 300, maxConns: 30 });
    const silent: Deno.Conn[] = [];
    try {
      for (let i = 0; i < 60; i++) silent.push(await Deno.connect({ port: server.addr.port }));
      // Half hold a slot in the handshake; the other half were refused at --max-conns and closed at once.
      const closed = await Promise.all(silent.map((c) => closedWithin(c, 3000)));
      assert.equal(closed.filter(Boolean).length, 60, "every silent connection is closed by the server");
      const good = await LineClient.connectTls(server.addr.port, ca);
      try {
        await good.send("/ping");
        assert.equal(await good.next(), "PONG");
      } finally {
        await good.close();
      }
    } finally {
      for (const c of silent) {
        try {
          c.close();
        } catch {
          // closed already
        }
      }
      await server.shutdown(5000);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("--auth-timeout: strangers trickling bytes without /auth are closed, and cannot lock out the token holder", async () => {
  const server = await startServer({ token: "right", maxConns: 10, authTimeoutMs: 300, idleTimeoutMs: 60_000 });
  const strangers = await Promise.all(Array.from({ length: 10 }, () => Deno.connect({ port: server.addr.port })));
  let trickling = true;
  const trickle = Promise.all(strangers.map(async (c) => {
    while (trickling) {
      try {
        await c.write(new Uint8Array([0x61])); // "a", never a newline
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }));
  try {
    await eventually("a token holder gets in", async () => {
      const c = await LineClient.connect(server.addr.port);
      try {
        await c.send("/auth right", "/ping");
        return (await c.take(2, 2000)).join(" ") === "OK PONG";
      } catch {
        return false;
      } finally {
        await c.close();
      }
    });
  } finally {
    trickling = false;
    await trickle;
    for (const c of strangers) {
      try {
        c.close();
      } catch {
        // closed by the server
      }
    }
    await server.shutdown(5000);
  }
});

Deno.test("--max-unauth-conns: beyond it a new connection is refused at once; authenticated ones do not count", async () => {
  const server = await startServer({ token: "right", maxUnauthConns: 3 });
  const clients: LineClient[] = [];
  try {
    const member = await LineClient.connect(server.addr.port);
    clients.push(member);
    await member.send("/auth right");
    assert.equal(await member.next(), "OK");
    for (let i = 0; i < 3; i++) clients.push(await LineClient.connect(server.addr.port));
    await eventually("3 waiting", () => server.stats().connections === 4);
    const extra = await LineClient.connect(server.addr.port);
    clients.push(extra);
    assert.match(await extra.next(), /^ERROR too_many_connections 3 connections are waiting to authenticate/);
    await extra.closedByServer();
  } finally {
    for (const c of clients) await c.close();
    await server.shutdown(5000);
  }
});

Deno.test("a token guessed again and again: each answer comes later, and the log gets one line per address a minute", async () => {
  const server = await spawnServe(["--task", "echo"], undefined, { env: { ASYNCTASK_TOKEN: "right" } });
  try {
    const t0 = performance.now();
    const answers = await Promise.all(Array.from({ length: 12 }, async () => {
      const c = await LineClient.connect(server.port);
      try {
        await c.send("/auth guess");
        return await c.next(15_000);
      } finally {
        await c.close();
      }
    }));
    for (const a of answers) assert.equal(a, "ERROR unauthorized wrong token; closing");
    assert.ok(performance.now() - t0 >= 2000, "the later guesses waited (100 ms doubling per failure, up to 5 s)");
    const lines = server.log().split("\n").filter((l) => /refused: wrong token/.test(l));
    assert.equal(lines.length, 1, server.log());
    assert.doesNotMatch(server.log(), /guess/, "the guessed token is not logged");
  } finally {
    server.child.kill("SIGTERM");
    await server.exited();
  }
});

Deno.test("invalid UTF-8 before /auth: ERROR unauthorized, and the connection is closed", async () => {
  const server = await startServer({ token: "right" });
  const c = await LineClient.connect(server.addr.port);
  try {
    await c.sendRaw(new Uint8Array([0xff, 0xfe, 0x0a]));
    assert.match(await c.next(), /^ERROR unauthorized the first line is not valid UTF-8; closing/);
    await c.closedByServer();
  } finally {
    await c.close();
    await server.shutdown(5000);
  }
});

Deno.test("--tls-cert /dev/zero is refused at once (not a regular file), not read until memory runs out", async () => {
  const r = await runCli(["serve", "--port", "0", "--tls-cert", "/dev/zero", "--tls-key", "/dev/zero"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /cannot read --tls-cert \/dev\/zero: not a regular file/);
});
