/**
 * The `--http [HOST:]PORT` address: a port alone listens on 127.0.0.1; an IPv6 host goes in
 * brackets (`[::1]:8080`).
 *
 * @module
 */

/** Where the HTTP listener listens. */
export interface HttpAddress {
  hostname: string;
  port: number;
}

/** A `--http` value that is not `[HOST:]PORT`. */
export class HttpAddressError extends Error {
  override name = "HttpAddressError";
}

/**
 * Reads `[HOST:]PORT`.
 *
 * @example
 * ```ts
 * import { parseHttpAddress } from "./address.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseHttpAddress("9090"), { hostname: "127.0.0.1", port: 9090 });
 * assert.deepEqual(parseHttpAddress("0.0.0.0:80"), { hostname: "0.0.0.0", port: 80 });
 * assert.deepEqual(parseHttpAddress("[::1]:0"), { hostname: "::1", port: 0 });
 * assert.throws(() => parseHttpAddress("localhost"), /--http/);
 * ```
 * @throws {HttpAddressError} saying what fits.
 */
export function parseHttpAddress(text: string): HttpAddress {
  const fail = (why: string): never => {
    throw new HttpAddressError(
      `--http "${text}": ${why}; give [HOST:]PORT, e.g. --http 9090 (127.0.0.1), --http 0.0.0.0:9090 or --http [::1]:9090`,
    );
  };
  const value = text.trim();
  let host = "127.0.0.1";
  let port = value;
  const bracketed = /^\[([^\]]+)\]:(.*)$/.exec(value);
  if (bracketed) {
    host = bracketed[1];
    port = bracketed[2];
  } else if (value.includes(":")) {
    const at = value.lastIndexOf(":");
    host = value.slice(0, at);
    port = value.slice(at + 1);
    if (host.includes(":")) fail("an IPv6 address goes in brackets");
    if (host === "") fail("the host is empty");
  }
  if (!/^\d{1,5}$/.test(port)) fail("the port is not a number");
  const n = Number(port);
  if (n > 65535) fail("the port is above 65535");
  return { hostname: host, port: n };
}

/**
 * The address to connect to for a listener bound to `hostname`: a wildcard address means this
 * machine's loopback.
 *
 * @example
 * ```ts
 * import { connectHost } from "./address.ts";
 * console.log(connectHost("0.0.0.0"), connectHost("::"), connectHost("10.1.2.3")); // 127.0.0.1 ::1 10.1.2.3
 * ```
 */
export function connectHost(hostname: string): string {
  if (hostname === "0.0.0.0" || hostname === "") return "127.0.0.1";
  if (hostname === "::" || hostname === "[::]") return "::1";
  return hostname;
}

/**
 * An address as a URL's host part: IPv6 in brackets.
 *
 * @example
 * ```ts
 * import { urlHost } from "./address.ts";
 * console.log(urlHost("::1", 9090), urlHost("127.0.0.1", 9090)); // [::1]:9090 127.0.0.1:9090
 * ```
 */
export function urlHost(hostname: string, port: number): string {
  return `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
}
