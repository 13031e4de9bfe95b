/**
 * Starts the HTTP side for a server: what `TaskServer.start` calls when `--http` is given. It
 * reads `--http`, joins the task names of the moment with what the config file says of them
 * (description, JSON Schema), and turns listening errors into a {@linkcode StartError} with the
 * fix.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { HandlerRegistry } from "../../task/handlers/mod.ts";
import { StartError } from "../errors.ts";
import type { Metrics } from "../metrics.ts";
import type { ServeOptions } from "../options.ts";
import type { ServerStats } from "../stats.ts";
import { connectHost, HttpAddressError, parseHttpAddress, urlHost } from "./address.ts";
import { HttpServer, type TaskInfo } from "./mod.ts";

const log = getLogger(["asynctask", "http"]);

/** What the server lends its HTTP side. */
export interface ServerParts {
  stats(): ServerStats;
  metrics(): Metrics;
  /** The handlers of the moment (a reload replaces them). */
  registry(): HandlerRegistry;
  /** Resolves once what the store recorded is on disk. */
  storeWritable(): Promise<void>;
  stopping(): boolean;
  /** Worker slots whose worker has loaded its handlers, where the pool can tell. */
  workersReady?(): number;
  /** Where the line protocol listens. */
  lineAddr: Deno.NetAddr;
}

/**
 * Starts the HTTP listener of `opts.http`.
 *
 * @example
 * ```ts ignore
 * const http = await startHttp({ ...opts, http: "127.0.0.1:9090" }, parts);
 * console.log(http.url); // http://127.0.0.1:9090/
 * ```
 *
 * @throws {StartError} for a bad `--http`, or an address that cannot be listened on.
 */
export async function startHttp(opts: ServeOptions & { http: string }, parts: ServerParts): Promise<HttpServer> {
  let address;
  try {
    address = parseHttpAddress(opts.http);
  } catch (e) {
    if (e instanceof HttpAddressError) throw new StartError(e.message);
    throw e;
  }
  const specs = new Map((opts.tasks ?? []).map((t) => [t.name, t]));
  const tasks = (): TaskInfo[] =>
    [...parts.registry().values()].map((h) => {
      const spec = specs.get(h.name);
      const description = spec?.description ?? h.description;
      return {
        name: h.name,
        ...(description ? { description } : {}),
        ...(spec?.schema !== undefined ? { schema: spec.schema } : {}),
      };
    });
  let http: HttpServer;
  try {
    http = await HttpServer.start({
      address,
      ...(opts.token ? { token: opts.token } : {}),
      ...(opts.tls ? { tls: opts.tls } : {}),
      journal: opts.journal !== undefined,
      maxBody: opts.maxLine,
    }, {
      stats: parts.stats,
      metrics: parts.metrics,
      tasks,
      storeWritable: parts.storeWritable,
      stopping: parts.stopping,
      ...(parts.workersReady ? { workersReady: parts.workersReady } : {}),
      workers: opts.workers,
      line: {
        hostname: connectHost(parts.lineAddr.hostname),
        port: parts.lineAddr.port,
        ...(opts.tls ? { tlsCert: opts.tls.cert } : {}),
        ...(opts.token ? { token: opts.token } : {}),
      },
    });
  } catch (e) {
    const where = urlHost(address.hostname, address.port);
    if (e instanceof Deno.errors.AddrInUse) {
      throw new StartError(`--http ${where}: the address is already in use; choose another port for --http`);
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new StartError(`--http ${where}: permission denied; ports below 1024 need privileges`);
    }
    if (e instanceof Deno.errors.AddrNotAvailable) {
      throw new StartError(`--http ${where}: no such address on this machine; check the host of --http`);
    }
    throw new StartError(`--http ${where}: cannot listen: ${e instanceof Error ? e.message : String(e)}`);
  }
  log.info("dashboard and /metrics on {url} (token {token})", {
    url: http.url,
    token: opts.token ? "required" : "none",
  });
  return http;
}
