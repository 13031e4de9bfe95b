import assert from "node:assert/strict";
import { parseReply } from "./replies.ts";
import { toRequest } from "./requests.ts";
import { Session } from "./session.ts";

Deno.test("toRequest: text as typed, /task for --task, JSON with --json", () => {
  assert.equal(toRequest(" 13800138000 ", { json: false }), "13800138000");
  assert.equal(toRequest("hi", { task: "echo", json: false }), "/task echo hi");
  assert.equal(toRequest("/stats", { task: "echo", json: false }), "/stats");
  assert.equal(toRequest("hi", { task: "echo", json: true }), '{"task":"echo","data":"hi"}');
  assert.equal(toRequest("hi", { json: true }), '{"data":"hi"}');
  assert.equal(toRequest("/task sleep 5", { json: true }), '{"task":"sleep","data":"5"}');
  assert.equal(toRequest("/status 3", { json: true }), '{"cmd":"status","task_id":3}');
  assert.equal(toRequest("/ping", { json: true }), '{"cmd":"ping"}');
});

Deno.test("Session: settles when every request has its reply and every task its final one", () => {
  const s = new Session();
  for (let i = 0; i < 3; i++) s.sent();
  s.received(parseReply("ACCEPTED 1 x"));
  s.received(parseReply('{"type":"accepted","task_id":2}'));
  s.received(parseReply("ERROR invalid_data nope"));
  assert.equal(s.settled, false);
  s.received(parseReply("DONE 1 ok"));
  s.received(parseReply('{"type":"failed","task_id":2,"error":{"code":"timeout","message":"t"}}'));
  assert.equal(s.settled, true);
  assert.equal(s.exitCode, 1);
  assert.equal(s.summary(), "2 accepted, 1 done, 1 failed, 1 refused");
});
