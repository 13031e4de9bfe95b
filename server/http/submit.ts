/**
 * The dashboard's task form submits through the server's own line protocol: one connection to
 * its own port (TLS when it serves TLS), `/auth` with its token when it has one, one JSON request,
 * and every reply passed on as it comes until the final one. So a task from the dashboard takes
 * the one path every task takes — the desk's checks, the queue, the limits, the counts — and shows
 * as a connection while it runs.
 *
 * Over TLS the server's own certificate is pinned: the connection goes on only if the peer shows
 * exactly the certificate this server was given (the name and the issuer need not be checked:
 * the bytes are compared), so it works with a self-signed certificate or a private CA's.
 *
 * @module
 */
import { X509Certificate } from "node:crypto";
import net from "node:net";
import tls from "node:tls";

/** How the server's own line port is reached. */
export interface LineTarget {
  hostname: string;
  port: number;
  /** The certificate chain (PEM) the server serves: its first certificate is pinned. */
  tlsCert?: string;
  /** The server's `--token`. */
  token?: string;
}

/** One request from the form. */
export interface FormRequest {
  task: string;
  data: unknown;
}

/** The reply types that end a request. */
const FINAL = new Set(["done", "failed", "error"]);

/** The DER bytes of the first certificate of a PEM chain. */
function leafDer(pem: string): Uint8Array {
  return new X509Certificate(pem).raw;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * A JSON reply line of this module's own, in the protocol's shape.
 *
 * @example
 * ```ts
 * import { errorLine } from "./submit.ts";
 * console.log(errorLine("unavailable", "no server")); // {"type":"error","error":{"code":"unavailable","message":"no server"}}
 * ```
 */
export function errorLine(code: string, message: string): string {
  return JSON.stringify({ type: "error", error: { code, message } }) + "\n";
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** What {@linkcode exchangeOverLine} does with the replies. */
interface ExchangeHandlers {
  /** A JSON reply line (after the answer to `/auth`); returns true when it ends the exchange. */
  reply(line: string, type: string): boolean;
  /** The exchange failed: the connection, the certificate, the server's answer, or the time. */
  fail(code: string, message: string): void;
}

/**
 * One connection to the server's own line port (its certificate pinned over TLS): `/auth` first
 * when the server has a token, then `requests`, then each reply handed to `on.reply` until it says
 * the exchange is over. Returns a function that ends it early (and closes the connection).
 */
function exchangeOverLine(
  target: LineTarget,
  requests: readonly string[],
  on: ExchangeHandlers,
  timeoutMs: number,
): () => void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let ended = false;
  // `socket` is assigned below, before any of these functions can run.
  const end = () => {
    ended = true;
    clearTimeout(timer);
    socket.destroy();
  };
  const fail = (code: string, message: string) => {
    if (ended) return;
    end();
    on.fail(code, message);
  };
  const lines: string[] = [];
  if (target.token !== undefined) lines.push(JSON.stringify({ cmd: "auth", token: target.token }));
  lines.push(...requests);
  const where = `${target.hostname}:${target.port}`;
  const onConnect = () => {
    if (target.tlsCert !== undefined && socket instanceof tls.TLSSocket) {
      const peer = socket.getPeerCertificate();
      if (!peer?.raw || !sameBytes(new Uint8Array(peer.raw), leafDer(target.tlsCert))) {
        return fail("unavailable", `the server at ${where} did not show this server's certificate`);
      }
    }
    socket.write(lines.join("\n") + "\n");
  };
  const socket: net.Socket = target.tlsCert !== undefined
    ? tls.connect({ host: target.hostname, port: target.port, rejectUnauthorized: false }, onConnect)
    : net.connect({ host: target.hostname, port: target.port }, onConnect);
  if (timeoutMs > 0) {
    timer = setTimeout(() => fail("timeout", `no final reply within ${timeoutMs} ms; see /status`), timeoutMs);
  }
  let rest = "";
  let authorized = target.token === undefined;
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    rest += chunk;
    let nl: number;
    while (!ended && (nl = rest.indexOf("\n")) >= 0) {
      const line = rest.slice(0, nl).replace(/\r$/, "");
      rest = rest.slice(nl + 1);
      if (line === "") continue;
      let type: string | undefined;
      try {
        const parsed: unknown = JSON.parse(line);
        if (parsed !== null && typeof parsed === "object" && "type" in parsed && typeof parsed.type === "string") {
          type = parsed.type;
        }
      } catch {
        // not JSON: failed below
      }
      if (type === undefined) {
        return fail("bad_reply", `the server answered a line that is not JSON: ${line.slice(0, 200)}`);
      }
      if (!authorized) {
        // The answer to /auth: OK is not for the caller; anything else is (the reason it failed).
        authorized = true;
        if (type === "ok") continue;
      }
      if (on.reply(line, type)) return end();
    }
  });
  socket.on("error", (e: Error) => fail("unavailable", `cannot reach the task port ${where}: ${e.message}`));
  socket.on("close", () => fail("unavailable", "the server closed the connection before the final reply"));
  return end;
}

/**
 * The replies of one exchange as an NDJSON stream, up to and including the first whose type is in
 * `final` (or one `error` of this module's own). Cancelling the stream closes the connection.
 */
function streamOverLine(
  target: LineTarget,
  request: string,
  final: ReadonlySet<string>,
  timeoutMs: number,
): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let end: (() => void) | undefined;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      let open = true;
      const push = (line: string) => {
        if (!open) return;
        try {
          controller.enqueue(encoder.encode(line));
        } catch {
          open = false;
          end?.(); // the HTTP client went
        }
      };
      const close = () => {
        if (!open) return;
        open = false;
        try {
          controller.close();
        } catch {
          // closed already
        }
      };
      end = exchangeOverLine(target, [request], {
        reply(line, type) {
          push(line + "\n");
          if (!final.has(type)) return false;
          close();
          return true;
        },
        fail(code, message) {
          push(errorLine(code, message));
          close();
        },
      }, timeoutMs);
    },
    cancel() {
      end?.();
    },
  });
}

/**
 * Submits one task over the line protocol and streams the replies as NDJSON (one JSON reply per
 * line: `accepted`, any `progress`, then `done` or `failed`; or one `error`). Cancelling the
 * stream closes the connection; the task goes on, and `/status` has its result.
 *
 * @example
 * ```ts ignore
 * const body = submitOverLine({ hostname: "127.0.0.1", port: 9501 }, { task: "echo", data: "hi" });
 * return new Response(body, { headers: { "content-type": "application/x-ndjson" } });
 * ```
 */
export function submitOverLine(target: LineTarget, request: FormRequest, timeoutMs = 0): ReadableStream<Uint8Array> {
  const line = JSON.stringify({ task: request.task, data: request.data, id: "dashboard" });
  return streamOverLine(target, line, FINAL, timeoutMs);
}

/** An operation on one task, from the dashboard's buttons. */
export interface TaskOperation {
  op: "cancel" | "retry" | "discard";
  taskId: number;
}

/** The operations {@linkcode operateOverLine} sends. */
export const OPERATIONS: readonly TaskOperation["op"][] = ["cancel", "retry", "discard"];

/**
 * Sends `/cancel`, `/retry` or `/discard` over the line protocol and streams the replies as NDJSON:
 * `ok` or `error` for a cancel or a discard; for a retry, `accepted` (the new task's id), any
 * `progress`, then the new task's `done` or `failed` — or one `error`.
 *
 * @example
 * ```ts ignore
 * const body = operateOverLine({ hostname: "127.0.0.1", port: 9501 }, { op: "retry", taskId: 7 });
 * ```
 */
export function operateOverLine(
  target: LineTarget,
  operation: TaskOperation,
  timeoutMs = 0,
): ReadableStream<Uint8Array> {
  const line = JSON.stringify({ cmd: operation.op, task_id: operation.taskId, id: "dashboard" });
  return streamOverLine(target, line, operation.op === "retry" ? FINAL : OPERATION_FINAL, timeoutMs);
}

/** The reply types that end a cancel or a discard. */
const OPERATION_FINAL = new Set(["ok", "error"]);

/**
 * Asks for the tasks in each of `states` (`/tasks <state> <limit>`) on one connection. Resolves
 * with the lists by state, or with the error that answered instead (the server's, or this module's
 * own `unavailable`, `bad_reply` or `timeout`).
 *
 * @example
 * ```ts ignore
 * const lists = await listOverLine({ hostname: "127.0.0.1", port: 9501 }, ["running", "queued"], 20);
 * ```
 */
export function listOverLine(
  target: LineTarget,
  states: readonly string[],
  limit: number,
  timeoutMs = 5000,
): Promise<{ lists: Record<string, unknown[]> } | { error: { code: string; message: string } }> {
  return new Promise((resolve) => {
    const lists: Record<string, unknown[]> = {};
    const requests = states.map((state) => JSON.stringify({ cmd: "tasks", state, limit, id: state }));
    exchangeOverLine(target, requests, {
      reply(line) {
        const value: unknown = JSON.parse(line);
        if (!isRecord(value)) return false;
        if (value.type === "error") {
          const e = isRecord(value.error) ? value.error : {};
          resolve({ error: { code: String(e.code ?? "error"), message: String(e.message ?? "") } });
          return true;
        }
        if (value.type !== "tasks" || typeof value.id !== "string" || !Array.isArray(value.tasks)) return false;
        lists[value.id] = value.tasks;
        if (Object.keys(lists).length < states.length) return false;
        resolve({ lists });
        return true;
      },
      fail(code, message) {
        resolve({ error: { code, message } });
      },
    }, timeoutMs);
  });
}
