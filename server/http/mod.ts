/**
 * The HTTP side of `serve --http [HOST:]PORT`: one `Deno.serve` listener in the server's process,
 * HTTPS with the server's certificate when it has one, guarded by the server's `--token` when it
 * has one (a login form and a session cookie for browsers, `Authorization: Bearer` for scripts).
 *
 * | path               | what                                                                          | token  |
 * | ------------------ | ----------------------------------------------------------------------------- | ------ |
 * | `/healthz`         | 200 while the process answers                                                 | no     |
 * | `/readyz`          | 200 when listening, workers up and the store writable; 503 otherwise, and while stopping | no |
 * | `/metrics`         | Prometheus text exposition (`exposition.ts`)                                  | yes    |
 * | `/`                | the live dashboard (`assets/`)                                                | yes    |
 * | `/api/events`      | its live feed: server-sent events, a snapshot a second (`live.ts`)            | yes    |
 * | `/api/snapshot`    | the latest snapshot, as JSON                                                  | yes    |
 * | `/api/tasks`       | the tasks this server runs, with their JSON Schema where they have one       | yes    |
 * | `/api/submit`      | POST `{"task", "data"}`: submits over the line protocol, streams its replies (`submit.ts`) | yes |
 * | `/api/operate`     | POST `{"op": "retry"\|"cancel"\|"discard", "task_id"}`: the same, for `/retry`, `/cancel`, `/discard` | yes |
 * | `/api/list`        | GET `?state=running&state=queued&limit=20`: `/tasks` of each state, as JSON    | yes    |
 * | `/login` `/logout` | the sign-in form; signing out                                                 | —      |
 * | `/assets/…`        | the dashboard's files                                                         | no     |
 *
 * Nothing here runs per task: the feed samples once a second and `/metrics` reads when scraped.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { createHash } from "node:crypto";
import { TokenCheck } from "../token.ts";
import type { Metrics } from "../metrics.ts";
import type { ServerStats } from "../stats.ts";
import { connectHost, type HttpAddress, urlHost } from "./address.ts";
import { exposition, EXPOSITION_CONTENT_TYPE, processUsage } from "./exposition.ts";
import { LiveFeed } from "./live.ts";
import { Sessions } from "./session.ts";
import { type LineTarget, listOverLine, operateOverLine, OPERATIONS, submitOverLine } from "./submit.ts";

export { HttpAddressError, parseHttpAddress } from "./address.ts";

const log = getLogger(["asynctask", "http"]);

/** A task the dashboard can submit. */
export interface TaskInfo {
  name: string;
  description?: string;
  /** Its data's JSON Schema, from the config file. */
  schema?: unknown;
}

/** What the HTTP side reads of the server. */
export interface HttpSource {
  stats(): ServerStats;
  metrics(): Metrics;
  tasks(): TaskInfo[];
  /** Resolves once what the store recorded is on disk; rejects (or never resolves) when it cannot write. */
  storeWritable(): Promise<void>;
  /** Whether the server is stopping. */
  stopping(): boolean;
  /** Worker slots the pool should have. */
  workers: number;
  /** Slots whose worker has loaded its handlers, where the pool can tell; else every slot that exists counts. */
  workersReady?(): number;
  /** The server's own line port, for the task form. */
  line: LineTarget;
}

/** How the HTTP side listens. */
export interface HttpOptions {
  address: HttpAddress;
  token?: string;
  tls?: { cert: string; key: string };
  /** Whether the server keeps a journal. */
  journal: boolean;
  /** Largest request body (the task form's JSON): the server's `--max-line`. */
  maxBody: number;
}

/** How long `/readyz` waits for the store's commit. */
export const STORE_PROBE_MS = 2000;
/** Task forms in flight at once; one more is answered 503. */
export const MAX_SUBMISSIONS = 32;
/** The states `/api/list` asks `/tasks` for. */
const LISTED_STATES: readonly string[] = ["queued", "running", "failed"];
/** How long a failed sign-in is held back. */
const LOGIN_FAILURE_DELAY_MS = 500;

/** The dashboard's files: path under `/assets/` (and `assets/` beside this module) → content type. */
const ASSETS: Record<string, string> = {
  "index.html": "text/html; charset=utf-8",
  "app.css": "text/css; charset=utf-8",
  "app.js": "text/javascript; charset=utf-8",
  "uplot/uPlot.iife.min.js": "text/javascript; charset=utf-8",
  "uplot/uPlot.min.css": "text/css; charset=utf-8",
  "uplot/LICENSE": "text/plain; charset=utf-8",
};

interface Asset {
  body: Uint8Array<ArrayBuffer>;
  type: string;
  etag: string;
}

async function loadAssets(): Promise<Map<string, Asset>> {
  const assets = new Map<string, Asset>();
  for (const [name, type] of Object.entries(ASSETS)) {
    const body = await Deno.readFile(new URL(`./assets/${name}`, import.meta.url));
    const etag = `"${createHash("sha256").update(body).digest("hex").slice(0, 20)}"`;
    assets.set(name, { body, type, etag });
  }
  return assets;
}

const SECURITY_HEADERS: Record<string, string> = {
  "x-content-type-options": "nosniff",
  // same-origin, not no-referrer: with no-referrer, a browser sends `Origin: null` with its own form posts.
  "referrer-policy": "same-origin",
  "x-frame-options": "DENY",
};

const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

function respond(body: BodyInit | null, status: number, headers: Record<string, string> = {}): Response {
  return new Response(body, { status, headers: { ...SECURITY_HEADERS, "cache-control": "no-store", ...headers } });
}

function json(value: unknown, status = 200): Response {
  return respond(JSON.stringify(value), status, { "content-type": "application/json; charset=utf-8" });
}

function text(body: string, status: number, headers: Record<string, string> = {}): Response {
  return respond(body, status, { "content-type": "text/plain; charset=utf-8", ...headers });
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A path to go back to after signing in: only this server's own pages. */
function safeNext(next: string | null): string {
  return next && next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/";
}

function loginPage(next: string, message?: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>asynctask — sign in</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/app.css">
</head>
<body class="login">
<main>
<h1>asynctask</h1>
<form method="post" action="/login" class="card">
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="${escapeHtml(next)}">
${message ? `<p class="error" role="alert">${escapeHtml(message)}</p>` : ""}
<button type="submit">Sign in</button>
<p class="hint">The server's <code>--token</code> (or <code>ASYNCTASK_TOKEN</code>).</p>
</form>
</main>
</body>
</html>
`;
}

/** A host name of a `Host` header without its port. */
function hostOnly(host: string): string {
  if (host.startsWith("[")) return host.slice(0, host.indexOf("]") + 1);
  const colon = host.lastIndexOf(":");
  return colon >= 0 ? host.slice(0, colon) : host;
}

/** Whether a request's host (`Host`, or HTTP/2's `:authority`) is an address rather than a name: what a page reached by a rebound DNS name does not have. */
function isAddressHost(host: string): boolean {
  const h = hostOnly(host).toLowerCase();
  return h === "localhost" || /^\d{1,3}(\.\d{1,3}){3}$/.test(h) || /^\[[0-9a-f:.]+\]$/.test(h);
}

/** Reads a request body up to `max` bytes; undefined beyond. */
async function readBody(req: Request, max: number): Promise<Uint8Array | undefined> {
  if (!req.body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of req.body) {
    size += chunk.length;
    if (size > max) return undefined;
    chunks.push(chunk);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * The HTTP listener.
 *
 * @example
 * ```ts ignore
 * const http = await HttpServer.start({ address: { hostname: "127.0.0.1", port: 9090 }, journal: false, maxBody: 1 << 20 }, source);
 * http.drain(); // /readyz answers 503 from now on
 * await http.close();
 * ```
 */
export class HttpServer {
  readonly addr: Deno.NetAddr;
  /** `http://host:port/` or `https://…`. */
  readonly url: string;
  readonly live: LiveFeed;
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #source: HttpSource;
  readonly #opts: HttpOptions;
  readonly #assets: Map<string, Asset>;
  readonly #sessions: Sessions | undefined;
  /** The task forms in flight: each function ends one. */
  readonly #submissions = new Set<() => Promise<void>>();
  #draining = false;
  #closed: Promise<void> | undefined;

  private constructor(
    server: Deno.HttpServer<Deno.NetAddr>,
    source: HttpSource,
    opts: HttpOptions,
    assets: Map<string, Asset>,
    live: LiveFeed,
  ) {
    this.#server = server;
    this.#source = source;
    this.#opts = opts;
    this.#assets = assets;
    this.live = live;
    this.#sessions = opts.token !== undefined
      ? new Sessions(new TokenCheck(opts.token), opts.tls !== undefined)
      : undefined;
    this.addr = server.addr;
    this.url = `${opts.tls ? "https" : "http"}://${urlHost(connectHost(server.addr.hostname), server.addr.port)}/`;
  }

  /**
   * Listens, and starts the dashboard's sampler.
   *
   * @throws {Deno.errors.AddrInUse} and the like, as `Deno.serve` does.
   */
  static async start(opts: HttpOptions, source: HttpSource): Promise<HttpServer> {
    const assets = await loadAssets();
    const made: { http?: HttpServer } = {};
    const live = new LiveFeed({
      stats: () => source.stats(),
      metrics: () => source.metrics(),
      ready: () => made.http ? made.http.#quickReady() : false,
      draining: () => made.http ? made.http.#isDraining() : false,
      rss: () => Deno.memoryUsage().rss,
    });
    const server = Deno.serve({
      hostname: opts.address.hostname,
      port: opts.address.port,
      ...(opts.tls ? { cert: opts.tls.cert, key: opts.tls.key } : {}),
      onListen: () => {},
      onError: (e) => {
        log.error("HTTP request failed: {error}", { error: e instanceof Error ? e.message : String(e) });
        return text("internal error\n", 500);
      },
    }, (req, info) => made.http!.#handle(req, info));
    const http = made.http = new HttpServer(server, source, opts, assets, live);
    live.start();
    return http;
  }

  /** The server is stopping: `/readyz` answers 503 from now on, and the dashboards are told at once. */
  drain(): void {
    this.#draining = true;
    this.live.announce();
  }

  /** Ends the live feeds and the task forms, and closes the listener. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#draining = true;
      this.live.close();
      for (const end of this.#submissions) await end();
      await this.#server.shutdown();
    })();
    return this.#closed;
  }

  #isDraining(): boolean {
    return this.#draining || this.#source.stopping();
  }

  #quickReady(): boolean {
    return !this.#isDraining() && this.#workersUp() >= this.#source.workers;
  }

  #workersUp(): number {
    return this.#source.workersReady?.() ?? this.#source.stats().workers.length;
  }

  /** `/readyz`'s checks: listening, workers, store. */
  async readiness(): Promise<{ ready: boolean; checks: Record<string, { ok: boolean; detail: string }> }> {
    const line = this.#source.line;
    const draining = this.#isDraining();
    const listening = {
      ok: !draining,
      detail: draining
        ? "draining: the server is stopping and takes no new tasks"
        : `accepting connections on ${urlHost(line.hostname, line.port)}`,
    };
    const up = this.#workersUp();
    const workers = {
      ok: up >= this.#source.workers,
      detail: `${up} of ${this.#source.workers} worker slots${this.#source.workersReady ? " ready" : ""}`,
    };
    let timer: ReturnType<typeof setTimeout> | undefined;
    const store = await Promise.race([
      this.#source.storeWritable().then(
        () => ({ ok: true, detail: this.#opts.journal ? "the journal's last commit is on disk" : "in memory" }),
        (e: unknown) => ({ ok: false, detail: `the store cannot be written: ${e instanceof Error ? e.message : e}` }),
      ),
      new Promise<{ ok: boolean; detail: string }>((resolve) =>
        timer = setTimeout(
          () => resolve({ ok: false, detail: `the store did not commit within ${STORE_PROBE_MS} ms` }),
          STORE_PROBE_MS,
        )
      ),
    ]);
    clearTimeout(timer);
    const checks = { listening, workers, store };
    return { ready: listening.ok && workers.ok && store.ok, checks };
  }

  async #handle(req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Promise<Response> {
    const url = new URL(req.url);
    const path = url.pathname;
    const method = req.method === "HEAD" ? "GET" : req.method;
    const res = await this.#route(req, method, path, url, info);
    return req.method === "HEAD" ? new Response(null, { status: res.status, headers: res.headers }) : res;
  }

  async #route(
    req: Request,
    method: string,
    path: string,
    url: URL,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  ): Promise<Response> {
    // Probes and static files: open to all.
    if (path === "/healthz") return method === "GET" ? text("ok\n", 200) : this.#notAllowed("GET");
    if (path === "/readyz") {
      if (method !== "GET") return this.#notAllowed("GET");
      const r = await this.readiness();
      return json(r, r.ready ? 200 : 503);
    }
    if (path.startsWith("/assets/")) return this.#asset(req, method, path.slice("/assets/".length));
    // Without a token, a page may only be reached by address: a site whose name an attacker
    // points at 127.0.0.1 (DNS rebinding) must not drive this server from a browser.
    if (!this.#sessions && !isAddressHost(url.host)) {
      return text(
        "this server has no --token, so its dashboard answers only to an address (127.0.0.1:port, [::1]:port, localhost:port); set --token to reach it by name\n",
        421,
      );
    }
    if (method === "POST" && !this.#sameOrigin(req, url)) return text("cross-origin request refused\n", 403);
    if (path === "/login") return await this.#login(req, method, url, info);
    if (path === "/logout") {
      if (method !== "POST") return this.#notAllowed("POST");
      return respond(null, 303, {
        location: "/login",
        ...(this.#sessions ? { "set-cookie": this.#sessions.clear() } : {}),
      });
    }
    if (this.#sessions && !this.#sessions.allows(req.headers)) return this.#unauthorized(req, path, url);
    switch (path) {
      case "/":
      case "/index.html": {
        if (method !== "GET") return this.#notAllowed("GET");
        const a = this.#assets.get("index.html")!;
        return respond(a.body, 200, { "content-type": a.type, "content-security-policy": PAGE_CSP });
      }
      case "/metrics":
        if (method !== "GET") return this.#notAllowed("GET");
        return respond(this.#metricsText(), 200, { "content-type": EXPOSITION_CONTENT_TYPE });
      case "/api/snapshot":
        if (method !== "GET") return this.#notAllowed("GET");
        return json(this.live.snapshot);
      case "/api/events": {
        if (method !== "GET") return this.#notAllowed("GET");
        const body = this.live.open();
        if (!body) {
          return this.#closed
            ? text("the server is stopping\n", 503)
            : text("too many live feeds open; close a dashboard and retry\n", 503, { "retry-after": "5" });
        }
        return respond(body, 200, { "content-type": "text/event-stream; charset=utf-8", "x-accel-buffering": "no" });
      }
      case "/api/tasks":
        if (method !== "GET") return this.#notAllowed("GET");
        return json({ tasks: this.#source.tasks(), token: this.#sessions !== undefined });
      case "/api/submit":
        if (method !== "POST") return this.#notAllowed("POST");
        return await this.#submit(req);
      case "/api/operate":
        if (method !== "POST") return this.#notAllowed("POST");
        return await this.#operate(req);
      case "/api/list":
        if (method !== "GET") return this.#notAllowed("GET");
        return await this.#list(url);
    }
    return text("not found\n", 404);
  }

  #metricsText(): string {
    return exposition({
      stats: this.#source.stats(),
      metrics: this.#source.metrics(),
      process: processUsage(),
      journal: this.#opts.journal,
      dashboardClients: this.live.feeds,
      ready: this.#quickReady(),
    });
  }

  #notAllowed(allow: string): Response {
    return text(`method not allowed; use ${allow}\n`, 405, { allow: allow === "GET" ? "GET, HEAD" : allow });
  }

  /** A POST from a page of another site is refused (the cookie is SameSite=Strict too; a page with no token has no cookie to lean on). */
  #sameOrigin(req: Request, url: URL): boolean {
    const origin = req.headers.get("origin");
    if (origin === null) return true; // not a browser's cross-site request: scripts send none
    try {
      return new URL(origin).host === url.host;
    } catch {
      return false;
    }
  }

  #unauthorized(req: Request, path: string, url: URL): Response {
    const page = req.method === "GET" && (req.headers.get("accept") ?? "").includes("text/html");
    if (page) return respond(null, 303, { location: `/login?next=${encodeURIComponent(path + url.search)}` });
    return text(
      "this server needs its token: send Authorization: Bearer <token>, or sign in at /login\n",
      401,
      { "www-authenticate": 'Bearer realm="asynctask"' },
    );
  }

  async #login(req: Request, method: string, url: URL, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Promise<Response> {
    const sessions = this.#sessions;
    if (!sessions) return respond(null, 303, { location: "/" });
    const page = (body: string, status: number, headers: Record<string, string> = {}) =>
      respond(body, status, {
        "content-type": "text/html; charset=utf-8",
        "content-security-policy": PAGE_CSP,
        ...headers,
      });
    if (method === "GET") return page(loginPage(safeNext(url.searchParams.get("next"))), 200);
    if (method !== "POST") return this.#notAllowed("GET, POST");
    const body = await readBody(req, 64 * 1024);
    const form = new URLSearchParams(body ? new TextDecoder().decode(body) : "");
    const next = safeNext(form.get("next"));
    if (sessions.token.matches(form.get("token") ?? "")) {
      return respond(null, 303, { location: next, "set-cookie": sessions.issue() });
    }
    log.warn("dashboard sign-in refused from {remote}: wrong token", { remote: info.remoteAddr.hostname });
    await new Promise((r) => setTimeout(r, LOGIN_FAILURE_DELAY_MS));
    return page(loginPage(next, "Wrong token."), 401);
  }

  #asset(req: Request, method: string, name: string): Response {
    if (method !== "GET") return this.#notAllowed("GET");
    const a = this.#assets.get(name);
    if (!a || name === "index.html") return text("not found\n", 404);
    const headers = { "content-type": a.type, etag: a.etag, "cache-control": "no-cache" };
    if (req.headers.get("if-none-match") === a.etag) return respond(null, 304, headers);
    return respond(a.body, 200, headers);
  }

  async #submit(req: Request): Promise<Response> {
    if (this.#isDraining()) {
      return json({
        type: "error",
        error: { code: "shutting_down", message: "the server is stopping and takes no new tasks" },
      }, 503);
    }
    if (!(req.headers.get("content-type") ?? "").toLowerCase().startsWith("application/json")) {
      return text('send the task as JSON: Content-Type: application/json, {"task": "<name>", "data": …}\n', 415);
    }
    if (this.#submissions.size >= MAX_SUBMISSIONS) {
      return text(
        `${MAX_SUBMISSIONS} tasks from the dashboard are already waiting for their results; retry later\n`,
        503,
        {
          "retry-after": "1",
        },
      );
    }
    const raw = await readBody(req, this.#opts.maxBody);
    if (!raw) return text(`the request is larger than --max-line (${this.#opts.maxBody} bytes)\n`, 413);
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder().decode(raw));
    } catch (e) {
      return text(`the body is not JSON: ${(e as Error).message}\n`, 400);
    }
    if (
      parsed === null || typeof parsed !== "object" || Array.isArray(parsed) || !("task" in parsed) ||
      typeof parsed.task !== "string" || parsed.task === ""
    ) {
      return text('send {"task": "<name>", "data": …}\n', 400);
    }
    const data = "data" in parsed ? parsed.data : null;
    return this.#stream(submitOverLine(this.#source.line, { task: parsed.task, data }));
  }

  /** A JSON request body of at most `--max-line` bytes, or the response that says why not. */
  async #jsonBody(req: Request, shape: string): Promise<{ value: unknown } | Response> {
    if (!(req.headers.get("content-type") ?? "").toLowerCase().startsWith("application/json")) {
      return text(`send JSON: Content-Type: application/json, ${shape}\n`, 415);
    }
    const raw = await readBody(req, this.#opts.maxBody);
    if (!raw) return text(`the request is larger than --max-line (${this.#opts.maxBody} bytes)\n`, 413);
    try {
      return { value: JSON.parse(new TextDecoder().decode(raw)) };
    } catch (e) {
      return text(`the body is not JSON: ${e instanceof Error ? e.message : String(e)}\n`, 400);
    }
  }

  /**
   * The dashboard's buttons: `/retry`, `/cancel` or `/discard` of one task over the line protocol,
   * its replies streamed as NDJSON (for a retry, up to the new task's result).
   */
  async #operate(req: Request): Promise<Response> {
    const shape = `{"op": "${OPERATIONS.join('" | "')}", "task_id": <id>}`;
    if (this.#submissions.size >= MAX_SUBMISSIONS) {
      return text(
        `${MAX_SUBMISSIONS} requests from the dashboard are already waiting for their results; retry later\n`,
        503,
        {
          "retry-after": "1",
        },
      );
    }
    const body = await this.#jsonBody(req, shape);
    if (body instanceof Response) return body;
    const v = body.value;
    const op = typeof v === "object" && v !== null && "op" in v ? OPERATIONS.find((o) => o === v.op) : undefined;
    const taskId = typeof v === "object" && v !== null && "task_id" in v ? v.task_id : undefined;
    if (op === undefined || typeof taskId !== "number" || !Number.isSafeInteger(taskId) || taskId <= 0) {
      return text(`send ${shape}\n`, 400);
    }
    return this.#stream(operateOverLine(this.#source.line, { op, taskId }));
  }

  /** The dashboard's running and queued lists: `/tasks <state> <limit>` of each `state` asked for, as JSON. */
  async #list(url: URL): Promise<Response> {
    if (this.#isDraining()) {
      return json({ type: "error", error: { code: "shutting_down", message: "the server is stopping" } }, 503);
    }
    const states = [...new Set(url.searchParams.getAll("state"))];
    const limitText = url.searchParams.get("limit") ?? "20";
    const limit = /^\d{1,4}$/.test(limitText) ? Number(limitText) : NaN;
    if (states.length === 0 || states.some((s) => !LISTED_STATES.includes(s)) || !(limit >= 1 && limit <= 1000)) {
      return text(`ask ?state=<${LISTED_STATES.join("|")}> (one or more) and &limit=<1…1000>\n`, 400);
    }
    const answer = await listOverLine(this.#source.line, states, limit);
    if ("error" in answer) {
      const status = answer.error.code === "unavailable" || answer.error.code === "shutting_down" ? 503 : 502;
      return json({ type: "error", error: answer.error }, status);
    }
    return json(answer.lists);
  }

  /** Passes a stream of replies on as the response's body; tracked until it ends, so that close() can end it. */
  #stream(replies: ReadableStream<Uint8Array>): Response {
    const reader = replies.getReader();
    const end = () => reader.cancel().catch(() => {});
    this.#submissions.add(end);
    const body = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const { done, value } = await reader.read();
        if (!done) return controller.enqueue(value);
        this.#submissions.delete(end);
        controller.close();
      },
      cancel: async () => {
        this.#submissions.delete(end);
        await end();
      },
    });
    return respond(body, 200, { "content-type": "application/x-ndjson; charset=utf-8" });
  }
}
