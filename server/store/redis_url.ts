/**
 * The `--broker` address: `redis://[user:password@]host:port/db`, or `rediss://` for TLS. The
 * password may come from `ASYNCTASK_BROKER_PASSWORD` instead, so that it is not on a command line;
 * it is never logged: {@linkcode BrokerAddress.display} leaves it out.
 *
 * @module
 */

/** Where the broker's Redis is, parsed. */
export interface BrokerAddress {
  host: string;
  port: number;
  db: number;
  tls: boolean;
  username?: string;
  password?: string;
  /** The address as logs and errors show it: no password. */
  display: string;
}

/**
 * Parses a broker address; the password, when the URL has none, from `envPassword`.
 *
 * @example
 * ```ts
 * import { parseBrokerUrl } from "./redis_url.ts";
 * import assert from "node:assert/strict";
 * const a = parseBrokerUrl("redis://app:s3cret@10.0.0.5:6380/2");
 * assert.equal(a.ok && a.value.display, "redis://app@10.0.0.5:6380/2");
 * assert.equal(a.ok && a.value.password, "s3cret");
 * assert.equal(parseBrokerUrl("http://x").ok, false);
 * ```
 */
export function parseBrokerUrl(
  text: string,
  envPassword?: string,
): { ok: true; value: BrokerAddress } | { ok: false; message: string } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { ok: false, message: `--broker ${JSON.stringify(text)} is not a URL; write redis://host:6379/0` };
  }
  if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
    return {
      ok: false,
      message: `--broker ${url.protocol}// is not a Redis address; write redis://host:6379/0 (rediss:// for TLS)`,
    };
  }
  const host = url.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1";
  const port = url.port === "" ? 6379 : Number(url.port);
  const path = url.pathname.replace(/^\//, "");
  const db = path === "" ? 0 : Number(path);
  if (!Number.isInteger(db) || db < 0 || db > 1000) {
    return { ok: false, message: `--broker: database "${path}" is not a number; write redis://host:6379/0` };
  }
  const username = url.username === "" ? undefined : decodeURIComponent(url.username);
  const password = url.password !== "" ? decodeURIComponent(url.password) : envPassword || undefined;
  const tls = url.protocol === "rediss:";
  const display = `${url.protocol}//${username ? `${username}@` : ""}${url.hostname}:${port}/${db}`;
  return { ok: true, value: { host, port, db, tls, username, password, display } };
}
