/**
 * Who may use the HTTP side when the server has a `--token`: a script sends
 * `Authorization: Bearer <token>`; a browser signs in once with the token (the login form) and
 * gets a session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS).
 *
 * The cookie holds no secret and no state is kept per session: it is an expiry time and an
 * HMAC-SHA256 of it under a key drawn at random when the server starts, so a restart signs every
 * browser out. Tokens are compared with {@linkcode TokenCheck} (fixed-length digests, constant
 * time), and cookies with `timingSafeEqual`.
 *
 * @module
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import type { TokenCheck } from "../token.ts";

/** The session cookie's name. */
export const SESSION_COOKIE = "asynctask_session";
/** How long a browser stays signed in. */
export const SESSION_SECONDS = 12 * 3600;

/**
 * Sessions signed by this process.
 *
 * @example
 * ```ts
 * import { TokenCheck } from "../token.ts";
 * import { Sessions } from "./session.ts";
 * import assert from "node:assert/strict";
 * const s = new Sessions(new TokenCheck("s3cret"), false);
 * const cookie = s.issue(1_000);
 * const value = cookie.split(";")[0];
 * assert.equal(s.allows(new Headers({ cookie: value }), 2_000), true);
 * assert.equal(s.allows(new Headers({ authorization: "Bearer s3cret" })), true);
 * assert.equal(s.allows(new Headers({ authorization: "Bearer guess" })), false);
 * ```
 */
export class Sessions {
  readonly #key = crypto.getRandomValues(new Uint8Array(32));

  constructor(readonly token: TokenCheck, readonly secure: boolean) {}

  #sign(expires: number): Uint8Array {
    return createHmac("sha256", this.#key).update(`asynctask-session:${expires}`).digest();
  }

  /** A `Set-Cookie` value for a new session, from `now` (ms). */
  issue(now: number = Date.now()): string {
    const expires = Math.floor(now / 1000) + SESSION_SECONDS;
    const value = `${expires}.${base64url(this.#sign(expires))}`;
    return `${SESSION_COOKIE}=${value}; Path=/; Max-Age=${SESSION_SECONDS}; HttpOnly; SameSite=Strict${
      this.secure ? "; Secure" : ""
    }`;
  }

  /** A `Set-Cookie` value that ends the session in the browser. */
  clear(): string {
    return `${SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict${this.secure ? "; Secure" : ""}`;
  }

  /** Whether a request carries the token (`Authorization: Bearer`) or a valid session cookie. */
  allows(headers: Headers, now: number = Date.now()): boolean {
    const auth = headers.get("authorization");
    if (auth !== null) {
      const m = /^Bearer[ \t]+(.+)$/i.exec(auth.trim());
      return m !== null && this.token.matches(m[1]);
    }
    const value = cookieValue(headers.get("cookie"), SESSION_COOKIE);
    if (value === undefined) return false;
    const dot = value.indexOf(".");
    if (dot <= 0) return false;
    const expires = Number(value.slice(0, dot));
    if (!Number.isSafeInteger(expires) || expires * 1000 <= now) return false;
    const given = fromBase64url(value.slice(dot + 1));
    const expected = this.#sign(expires);
    return given !== undefined && given.length === expected.length && timingSafeEqual(given, expected);
  }
}

/**
 * One cookie's value from a `Cookie` header.
 *
 * @example
 * ```ts
 * import { cookieValue } from "./session.ts";
 * console.log(cookieValue("theme=dark; asynctask_session=123.abc", "asynctask_session")); // 123.abc
 * ```
 */
export function cookieValue(header: string | null, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function base64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64url(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]{1,100}$/.test(text)) return undefined;
  try {
    const s = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
    return Uint8Array.from(s, (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}
