/**
 * The HTTP side of `serve --http`: probes, the token (Bearer and the login form's cookie), the
 * task form's endpoint over the line protocol, HTTPS with the server's certificate, the live feed,
 * and start-up errors. Against a real server in this process and real sockets.
 */
import assert from "node:assert/strict";
import { submitOverLine } from "../server/http/submit.ts";
import { StartError } from "../server/mod.ts";
import type { TaskServer } from "../server/mod.ts";
import { LineClient, makeCertificates, spawnServe, startServer } from "./helpers.ts";

// Spawning a program that is not installed throws at once, not in the promise: hence the try.
const openssl = await (async () => {
  try {
    return (await new Deno.Command("openssl", { args: ["version"], stdout: "null", stderr: "null" }).output()).success;
  } catch {
    return false;
  }
})();

/** The HTTP side's base URL. */
function base(server: TaskServer, scheme = "http"): string {
  const addr = server.httpAddr;
  assert.ok(addr, "the HTTP side listens");
  return `${scheme}://127.0.0.1:${addr.port}`;
}

/** A fetch that reads the whole body (so that no resource leaks). */
/** `/readyz` once the server is ready: its workers load their handlers a moment after the start (5 s at most). */
async function ready(url: string): Promise<{ status: number; headers: Headers; body: string }> {
  let r = await get(url);
  for (let i = 0; i < 100 && r.status === 503; i++) {
    await new Promise((done) => setTimeout(done, 50));
    r = await get(url);
  }
  return r;
}

async function get(url: string, init: RequestInit = {}): Promise<{ status: number; headers: Headers; body: string }> {
  const r = await fetch(url, { redirect: "manual", ...init });
  return { status: r.status, headers: r.headers, body: await r.text() };
}

/** A raw HTTP/1.1 GET with a `Host` of one's choosing (fetch sets its own): the status code. */
async function rawGet(port: number, path: string, host: string): Promise<{ status: number; text: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
  let text = "";
  const buf = new Uint8Array(4096);
  for (let n; (n = await conn.read(buf)) !== null;) text += new TextDecoder().decode(buf.subarray(0, n));
  conn.close();
  return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1]), text };
}

/** The NDJSON replies of one `/api/submit`. */
async function submit(
  url: string,
  task: unknown,
  headers: Record<string, string> = {},
  client?: Deno.HttpClient,
): Promise<{ status: number; replies: Record<string, unknown>[]; body: string }> {
  const r = await fetch(`${url}/api/submit`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(task),
    ...(client ? { client } : {}),
  });
  const body = await r.text();
  const replies = r.headers.get("content-type")?.includes("ndjson")
    ? body.trim().split("\n").map((l) => JSON.parse(l))
    : [];
  return { status: r.status, replies, body };
}

Deno.test("http: /healthz 200; /readyz 200 with its checks, 503 while the server drains, then the listener closes", async () => {
  const server = await startServer({ http: "127.0.0.1:0", workers: 2 });
  const url = base(server);
  assert.deepEqual(await get(`${url}/healthz`).then((r) => [r.status, r.body]), [200, "ok\n"]);
  const readyz = await ready(`${url}/readyz`);
  assert.equal(readyz.status, 200, readyz.body);
  const checks = JSON.parse(readyz.body);
  assert.equal(checks.ready, true);
  assert.deepEqual(Object.keys(checks.checks), ["listening", "workers", "store"]);
  assert.equal(checks.checks.workers.detail, "2 of 2 worker slots ready");
  assert.equal((await fetch(`${url}/readyz`, { method: "HEAD" })).status, 200, "HEAD works for probes");

  // A task that runs 1.5 s keeps the server draining for that long.
  const c = await LineClient.connect(server.addr.port);
  await c.send("/task sleep 1500");
  assert.match(await c.next(), /^ACCEPTED 1/);
  const stopping = server.shutdown(10_000);
  const draining = await get(`${url}/readyz`);
  assert.equal(draining.status, 503, draining.body);
  const body = JSON.parse(draining.body);
  assert.equal(body.ready, false);
  assert.equal(body.checks.listening.ok, false);
  assert.match(body.checks.listening.detail, /draining/);
  assert.equal((await get(`${url}/healthz`)).status, 200, "alive while draining");
  assert.match(await c.next(), /^DONE 1/, "the task still finishes");
  assert.deepEqual(await stopping, { unfinished: 0, delayedFailed: 0, delayedKept: 0 });
  await assert.rejects(fetch(`${url}/healthz`), "the HTTP listener is closed once the server has stopped");
  await c.close();
});

Deno.test("http: without --token every page is open, but only by address: a rebound name gets 421", async () => {
  const server = await startServer({ http: "127.0.0.1:0", workers: 1 });
  try {
    const url = base(server);
    const page = await get(`${url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type")!, /^text\/html/);
    assert.match(page.headers.get("content-security-policy")!, /script-src 'self'/);
    assert.match(page.body, /<title>asynctask<\/title>/);
    assert.equal((await get(`${url}/metrics`)).status, 200);
    const port = server.httpAddr!.port;
    const rebound = await rawGet(port, "/metrics", `attacker.example:${port}`);
    assert.equal(rebound.status, 421, rebound.text);
    assert.match(rebound.text, /set --token/);
    assert.equal((await rawGet(port, "/", `localhost:${port}`)).status, 200);
    assert.equal((await rawGet(port, "/", `[::1]:${port}`)).status, 200);
    assert.equal((await rawGet(port, "/healthz", "attacker.example")).status, 200, "probes are open");
    assert.equal((await get(`${url}/login`)).status, 303, "no token: no sign-in page");
    assert.equal((await get(`${url}/nope`)).status, 404);
    assert.equal((await get(`${url}/metrics`, { method: "POST" })).status, 405);
    const asset = await get(`${url}/assets/app.js`);
    assert.equal(asset.status, 200);
    assert.match(asset.headers.get("content-type")!, /javascript/);
    const again = await get(`${url}/assets/app.js`, { headers: { "if-none-match": asset.headers.get("etag")! } });
    assert.equal(again.status, 304);
    assert.equal((await get(`${url}/assets/../server.ts`)).status, 404);
  } finally {
    await server.shutdown(5000);
  }
});

Deno.test("http: with --token, every page needs it (Bearer, or the login form's HttpOnly SameSite=Strict cookie); probes do not", async () => {
  const server = await startServer({ http: "127.0.0.1:0", workers: 1, token: "s3cret-token" });
  try {
    const url = base(server);
    for (const path of ["/metrics", "/api/snapshot", "/api/tasks", "/api/events", "/"]) {
      const r = await get(`${url}${path}`);
      assert.equal(r.status, 401, `${path} without the token`);
      assert.equal(r.headers.get("www-authenticate"), 'Bearer realm="asynctask"');
    }
    assert.equal((await get(`${url}/healthz`)).status, 200);
    assert.equal((await ready(`${url}/readyz`)).status, 200);
    assert.equal((await get(`${url}/assets/app.css`)).status, 200, "the files of the sign-in page are open");
    // A page asked for by a browser goes to the sign-in form, and back after it.
    const page = await get(`${url}/`, { headers: { accept: "text/html" } });
    assert.equal(page.status, 303);
    assert.equal(page.headers.get("location"), "/login?next=%2F");
    // Scripts: Authorization: Bearer.
    assert.equal((await get(`${url}/metrics`, { headers: { authorization: "Bearer s3cret-token" } })).status, 200);
    assert.equal((await get(`${url}/metrics`, { headers: { authorization: "Bearer s3cret-toke" } })).status, 401);
    assert.equal((await get(`${url}/metrics`, { headers: { authorization: "Basic s3cret-token" } })).status, 401);
    // The sign-in form.
    const form = await get(`${url}/login?next=/metrics`);
    assert.equal(form.status, 200);
    assert.match(form.body, /<input id="token" name="token" type="password"/);
    assert.match(form.body, /name="next" value="\/metrics"/);
    const wrong = await get(`${url}/login`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "token=guess&next=%2F",
    });
    assert.equal(wrong.status, 401);
    assert.match(wrong.body, /<p class="error" role="alert">Wrong token.<\/p>/);
    assert.equal(wrong.headers.get("set-cookie"), null);
    const right = await get(`${url}/login`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "token=s3cret-token&next=%2F%2Fevil.example",
    });
    assert.equal(right.status, 303);
    assert.equal(right.headers.get("location"), "/", "only this server's own pages after signing in");
    const setCookie = right.headers.get("set-cookie")!;
    assert.match(setCookie, /^asynctask_session=\d+\.[\w-]+; Path=\/; Max-Age=43200; HttpOnly; SameSite=Strict$/);
    const cookie = setCookie.split(";")[0];
    assert.equal((await get(`${url}/`, { headers: { cookie } })).status, 200);
    assert.equal((await get(`${url}/metrics`, { headers: { cookie } })).status, 200);
    const forged = cookie.replace(/\.(.)/, (_m, c: string) => `.${c === "A" ? "B" : "A"}`);
    assert.equal((await get(`${url}/metrics`, { headers: { cookie: forged } })).status, 401, "a forged cookie");
    const later = cookie.replace(/=(\d+)\./, (_m, t: string) => `=${Number(t) + 1}.`);
    assert.equal((await get(`${url}/metrics`, { headers: { cookie: later } })).status, 401, "a stretched expiry");
    const out = await get(`${url}/logout`, { method: "POST", headers: { cookie } });
    assert.equal(out.status, 303);
    assert.match(out.headers.get("set-cookie")!, /^asynctask_session=; Path=\/; Max-Age=0/);
    // With a token, a name is fine (no DNS-rebinding risk: a stranger's page has no token).
    assert.equal((await rawGet(server.httpAddr!.port, "/healthz", "asynctask.internal")).status, 200);
  } finally {
    await server.shutdown(5000);
  }
});

Deno.test("http: /api/submit runs a task through the line protocol and streams its replies; refusals come back as they are", async () => {
  const server = await startServer({ http: "127.0.0.1:0", workers: 1, token: "tok" });
  try {
    const url = base(server);
    const auth = { authorization: "Bearer tok" };
    const ok = await submit(url, { task: "echo", data: { n: 1 } }, auth);
    assert.equal(ok.status, 200, ok.body);
    assert.deepEqual(ok.replies.map((r) => r.type), ["accepted", "done"]);
    assert.deepEqual(ok.replies[1].result, { n: 1 });
    assert.equal(ok.replies[1].task_id, ok.replies[0].task_id);
    const unknown = await submit(url, { task: "nope", data: 1 }, auth);
    assert.deepEqual(unknown.replies.map((r) => [r.type, (r.error as { code: string }).code]), [[
      "error",
      "unknown_task",
    ]]);
    const invalid = await submit(url, { task: "sleep", data: "soon" }, auth);
    assert.deepEqual(invalid.replies.map((r) => (r.error as { code: string }).code), ["invalid_data"]);
    // The form's tasks are the server's: counted as every task is.
    assert.equal(server.stats().by_task.echo.done, 1);
    assert.equal(server.stats().refused, 2);

    // Only JSON, only from this origin.
    const form = await fetch(`${url}/api/submit`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/x-www-form-urlencoded" },
      body: "task=echo",
    });
    assert.equal(form.status, 415);
    await form.body?.cancel();
    const cross = await submit(url, { task: "echo", data: 1 }, { ...auth, origin: "https://attacker.example" });
    assert.equal(cross.status, 403);
    assert.equal((await submit(url, { task: "echo" })).status, 401, "the token is needed");
    const bad = await fetch(`${url}/api/submit`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: "{nope",
    });
    assert.equal(bad.status, 400);
    await bad.body?.cancel();
    const tasks = await (await fetch(`${url}/api/tasks`, { headers: auth })).json();
    assert.deepEqual(tasks.tasks.map((t: { name: string }) => t.name), ["sms", "echo", "sleep"]);
    assert.equal(tasks.token, true);
  } finally {
    await server.shutdown(5000);
  }
});

Deno.test("http: a task's JSON Schema from the config file is shown to the form", async () => {
  const schema = { type: "object", properties: { to: { type: "string" } }, required: ["to"] };
  const server = await startServer({
    http: "127.0.0.1:0",
    workers: 1,
    defaultTask: undefined,
    tasks: [{ kind: "builtin", name: "echo", description: "says it back", schema }],
  });
  try {
    const tasks = await (await fetch(`${base(server)}/api/tasks`)).json();
    assert.deepEqual(tasks.tasks, [{ name: "echo", description: "says it back", schema }]);
  } finally {
    await server.shutdown(5000);
  }
});

Deno.test({
  name: `http: HTTPS with the server's certificate; the form submits over TLS with that certificate pinned${
    openssl ? "" : " — SKIPPED: openssl is not installed (it makes the test certificate)"
  }`,
  ignore: !openssl,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const certs = await makeCertificates(dir);
      const server = await startServer({ http: "127.0.0.1:0", workers: 1, tls: { cert: certs.cert, key: certs.key } });
      const client = Deno.createHttpClient({ caCerts: [certs.ca] });
      try {
        const url = `https://localhost:${server.httpAddr!.port}`;
        const r = await fetch(`${url}/healthz`, { client });
        assert.equal(r.status, 200);
        await r.body?.cancel();
        await assert.rejects(fetch(`http://127.0.0.1:${server.httpAddr!.port}/healthz`), "no plain HTTP on it");
        const ok = await submit(url, { task: "echo", data: "over TLS" }, {}, client);
        assert.deepEqual(ok.replies.map((r) => r.type), ["accepted", "done"], ok.body);
        assert.equal(ok.replies[1].result, "over TLS");
        const login = await fetch(`${url}/login`, { client, redirect: "manual" });
        assert.equal(login.status, 303);
        await login.body?.cancel();
        // The pin holds: a TLS port that shows another certificate (even one a trusted CA signed) gets no request.
        const other = await makeCertificates(await Deno.makeTempDir({ dir }));
        const impostor = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: other.cert, key: other.key });
        const heard: string[] = [];
        const accepting = (async () => {
          for await (const conn of impostor) {
            const buf = new Uint8Array(1024);
            const n = await conn.read(buf).catch(() => null);
            if (n) heard.push(new TextDecoder().decode(buf.subarray(0, n)));
            conn.close();
          }
        })();
        const stream = submitOverLine(
          { hostname: "127.0.0.1", port: impostor.addr.port, tlsCert: certs.cert },
          { task: "echo", data: "secret" },
        );
        const said = await new Response(stream).text();
        assert.match(
          said,
          /"code":"unavailable","message":"the server at 127\.0\.0\.1:\d+ did not show this server's certificate"/,
        );
        impostor.close();
        await accepting;
        assert.deepEqual(heard, [], "nothing was sent to it");
      } finally {
        client.close();
        await server.shutdown(5000);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("http: /api/events sends the history, then a snapshot a second whose numbers follow the tasks sent over TCP", async () => {
  const server = await startServer({ http: "127.0.0.1:0", workers: 1 });
  const ac = new AbortController();
  try {
    const r = await fetch(`${base(server)}/api/events`, { signal: ac.signal });
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type")!, /^text\/event-stream/);
    const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    const events: { event: string; data: Record<string, unknown> }[] = [];
    const nextEvent = async () => {
      const deadline = Date.now() + 5000;
      while (!buffer.includes("\n\n")) {
        if (Date.now() > deadline) throw new Error(`no event within 5 s: ${buffer}`);
        const { value, done } = await reader.read();
        if (done) throw new Error("the feed ended");
        buffer += value;
      }
      const at = buffer.indexOf("\n\n");
      const block = buffer.slice(0, at);
      buffer = buffer.slice(at + 2);
      const event = /^event: (.*)$/m.exec(block)![1];
      const data = JSON.parse(/^data: (.*)$/m.exec(block)![1]);
      events.push({ event, data });
      return { event, data };
    };
    const history = await nextEvent();
    assert.equal(history.event, "history");
    assert.ok(Array.isArray(history.data.t));
    const first = await nextEvent();
    assert.equal(first.event, "snapshot");
    assert.equal(first.data.done, 0);
    const c = await LineClient.connect(server.addr.port);
    await c.send("/task echo a", "/task echo b", "/task echo c");
    await c.take(6);
    let snap = first.data;
    for (let i = 0; i < 4 && snap.done !== 3; i++) snap = (await nextEvent()).data;
    assert.equal(snap.done, 3, "the live numbers follow");
    assert.equal(snap.connections, 1);
    const echo = (snap.tasks as { name: string; done: number }[]).find((t) => t.name === "echo");
    assert.equal(echo?.done, 3);
    await c.close();
  } finally {
    ac.abort();
    await server.shutdown(5000);
  }
});

Deno.test("http: a bad --http, or one already in use, stops the start with the fix (and frees the task port)", async () => {
  await assert.rejects(startServer({ http: "localhost" }), (e: Error) => {
    assert.ok(e instanceof StartError);
    assert.match(e.message, /--http "localhost": the port is not a number; give \[HOST:\]PORT/);
    return true;
  });
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = busy.addr.port;
    await assert.rejects(startServer({ http: `127.0.0.1:${port}`, workers: 1 }), (e: Error) => {
      assert.ok(e instanceof StartError);
      assert.match(e.message, /already in use; choose another port for --http/);
      return true;
    });
  } finally {
    busy.close();
  }
});

Deno.test("http: serve --http from the command line says where the dashboard is", async () => {
  const server = await spawnServe(["--http", "127.0.0.1:0", "--workers", "1"]);
  try {
    const deadline = Date.now() + 10_000;
    let m: RegExpExecArray | null = null;
    while (
      !(m = /dashboard and \/metrics on http:\/\/127\.0\.0\.1:(\d+)\//.exec(server.log())) && Date.now() < deadline
    ) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(m, server.log());
    const r = await ready(`http://127.0.0.1:${m[1]}/readyz`);
    assert.equal(r.status, 200);
  } finally {
    server.child.kill("SIGTERM");
    assert.equal((await server.exited()).code, 0);
  }
});
