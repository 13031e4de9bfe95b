import assert from "node:assert/strict";
import { TokenCheck } from "../token.ts";
import { cookieValue, SESSION_COOKIE, SESSION_SECONDS, Sessions } from "./session.ts";

const cookieOf = (setCookie: string) => setCookie.split(";")[0];

Deno.test("Sessions: a signed cookie holds until it expires; another process's, a forged or a stretched one does not", () => {
  const token = new TokenCheck("t0ken");
  const s = new Sessions(token, true);
  const now = 1_800_000_000_000;
  const set = s.issue(now);
  assert.match(
    set,
    new RegExp(
      `^${SESSION_COOKIE}=\\d+\\.[\\w-]{43}; Path=/; Max-Age=${SESSION_SECONDS}; HttpOnly; SameSite=Strict; Secure$`,
    ),
  );
  const cookie = cookieOf(set);
  const headers = (c: string) => new Headers({ cookie: `other=1; ${c}; more=2` });
  assert.equal(s.allows(headers(cookie), now + 1000), true);
  assert.equal(s.allows(headers(cookie), now + SESSION_SECONDS * 1000), false, "expired");
  assert.equal(new Sessions(token, true).allows(headers(cookie), now + 1000), false, "signed by another key");
  const [name, value] = cookie.split("=");
  const [expires, sig] = value.split(".");
  assert.equal(s.allows(headers(`${name}=${Number(expires) + 3600}.${sig}`), now + 1000), false, "stretched");
  assert.equal(s.allows(headers(`${name}=${expires}.${sig.slice(1)}`), now + 1000), false, "cut");
  assert.equal(s.allows(headers(`${name}=${expires}.${"A".repeat(43)}`), now + 1000), false, "forged");
  assert.equal(s.allows(headers(`${name}=garbage`), now + 1000), false);
  assert.equal(s.allows(new Headers(), now), false);
  assert.match(s.clear(), /^asynctask_session=; Path=\/; Max-Age=0; HttpOnly; SameSite=Strict; Secure$/);
  assert.doesNotMatch(new Sessions(token, false).issue(now), /Secure/, "no Secure over plain HTTP");
});

Deno.test("Sessions: Authorization Bearer is checked against the token, and wins over a cookie", () => {
  const s = new Sessions(new TokenCheck("t0ken"), false);
  const cookie = cookieOf(s.issue());
  assert.equal(s.allows(new Headers({ authorization: "Bearer t0ken" })), true);
  assert.equal(s.allows(new Headers({ authorization: "bearer   t0ken" })), true);
  assert.equal(s.allows(new Headers({ authorization: "Bearer t0ke" })), false);
  assert.equal(s.allows(new Headers({ authorization: "Bearer wrong", cookie })), false);
  assert.equal(cookieValue("a=1; b = 2 ;c=3", "b"), "2");
  assert.equal(cookieValue(null, "b"), undefined);
});
