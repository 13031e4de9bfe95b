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
  const encoder = new TextEncoder();
  let socket: net.Socket | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let ended = false;
  const finish = () => {
    ended = true;
    clearTimeout(timer);
    socket?.destroy();
  };
  return new ReadableStream<Uint8Array>({
    start(controller) {
      const push = (line: string) => {
        if (ended) return;
        try {
          controller.enqueue(encoder.encode(line));
        } catch {
          finish(); // the HTTP client went
        }
      };
      const close = () => {
        if (ended) return;
        finish();
        try {
          controller.close();
        } catch {
          // closed already
        }
      };
      const fail = (code: string, message: string) => {
        push(errorLine(code, message));
        close();
      };
      const lines: string[] = [];
      if (target.token !== undefined) lines.push(JSON.stringify({ cmd: "auth", token: target.token }));
      lines.push(JSON.stringify({ task: request.task, data: request.data, id: "dashboard" }));
      const where = `${target.hostname}:${target.port}`;
      const onConnect = () => {
        if (target.tlsCert !== undefined && socket instanceof tls.TLSSocket) {
          const peer = socket.getPeerCertificate();
          if (!peer?.raw || !sameBytes(new Uint8Array(peer.raw), leafDer(target.tlsCert))) {
            return fail("unavailable", `the server at ${where} did not show this server's certificate`);
          }
        }
        socket!.write(lines.join("\n") + "\n");
      };
      socket = target.tlsCert !== undefined
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
            // not JSON: passed on below as an error
          }
          if (type === undefined) {
            return fail("bad_reply", `the server answered a line that is not JSON: ${line.slice(0, 200)}`);
          }
          if (!authorized) {
            // The answer to /auth: OK is not for the form; anything else is (the reason it failed).
            authorized = true;
            if (type === "ok") continue;
          }
          push(line + "\n");
          if (FINAL.has(type)) return close();
        }
      });
      socket.on("error", (e: Error) => fail("unavailable", `cannot reach the task port ${where}: ${e.message}`));
      socket.on("close", () => fail("unavailable", "the server closed the connection before the final reply"));
    },
    cancel() {
      finish();
    },
  });
}
