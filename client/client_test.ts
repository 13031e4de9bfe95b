import assert from "node:assert/strict";
import { MESSAGES } from "./messages.ts";
import { renderReply } from "./render.ts";
import { parseReply } from "./replies.ts";
import { localMistake, toRequest } from "./requests.ts";
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
  // With --task, a JSON object that is not a request is the task's data; a request is sent as it is (with the task).
  assert.equal(
    toRequest('{"task":"steps","data":1,"id":"j1"}', { task: "echo", json: false }),
    '{"task":"steps","data":1,"id":"j1"}',
  );
  assert.equal(toRequest('{"data":1,"id":"j1"}', { task: "echo", json: false }), '{"task":"echo","data":1,"id":"j1"}');
  assert.equal(toRequest('{"cmd":"stats"}', { task: "echo", json: true }), '{"cmd":"stats"}');
  assert.equal(toRequest('{"to":"a@b.c"}', { task: "email", json: false }), '{"task":"email","data":{"to":"a@b.c"}}');
  assert.equal(toRequest(' {"to":"a@b.c"} ', { task: "email", json: true }), '{"task":"email","data":{"to":"a@b.c"}}');
  assert.equal(toRequest('{"task":"echo","data":1}', { json: false }), '{"task":"echo","data":1}');
  assert.equal(toRequest("{not json", { task: "email", json: false }), "{not json", "the server names the mistake");
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

Deno.test("Session: each ERROR is matched to its request in order; refused commands count only when strict", () => {
  for (const strict of [true, false]) {
    const s = new Session({ strict });
    s.sent("command");
    s.sent("task");
    s.sent("command");
    s.received(parseReply("ERROR not_found no task 9"));
    s.received(parseReply("ERROR invalid_data nope"));
    s.received(parseReply("PONG"));
    assert.equal(s.refused, 1);
    assert.equal(s.commandsRefused, 1);
    assert.equal(s.exitCode, 1, "a refused task fails either way");
    const c = new Session({ strict });
    c.sent("command");
    c.received(parseReply("ERROR not_found no task 9"));
    assert.equal(c.exitCode, strict ? 1 : 0);
    // An error the server closes the connection with fails every session.
    const closing = new Session({ strict });
    closing.sent("command");
    closing.received(parseReply("ERROR unauthorized wrong token; closing"));
    assert.equal(closing.exitCode, 1);
  }
});

Deno.test("renderReply: JSON replies in their text form, what only JSON says after them", () => {
  assert.equal(
    renderReply('{"type":"failed","id":"x","task_id":4,"error":{"code":"timeout","message":"a\\nb"},"attempts":3}'),
    'FAILED 4 timeout a\\nb (id "x", 3 attempts)',
  );
  assert.equal(renderReply('{"type":"status","task_id":4,"state":"running"}'), "STATUS 4 running");
  assert.equal(renderReply('{"type":"pong","id":1}'), "PONG (id 1)");
  assert.equal(renderReply('{"type":"pong","id":1}', { raw: true }), '{"type":"pong","id":1}');
  assert.equal(renderReply('{"type":"done","task_id":1,"result":null}', { msgs: MESSAGES.zh }), "DONE 1 null");
  assert.equal(
    renderReply(
      'STATS {"accepted":3,"tasks":["sms","echo"],"by_task":{"sms":{"accepted":3,"done":2}},"workers":[{"id":1,"done":2}]}',
    ),
    [
      "STATS",
      "  accepted  3",
      "  tasks     sms, echo",
      "  by_task:",
      "         accepted  done",
      "    sms         3     2",
      "  workers:",
      "    id  done",
      "    1      2",
    ].join("\n"),
  );
});

Deno.test("localMistake: what the client tells without asking the server", () => {
  assert.equal(localMistake("/task echo hi"), undefined);
  assert.equal(localMistake("/auth s3cret"), undefined);
  assert.equal(localMistake('{"cmd":"stats"}'), undefined);
  assert.deepEqual(localMistake("/task"), { kind: "usage", command: "/task" });
  assert.deepEqual(localMistake("/status 0"), { kind: "usage", command: "/status" });
  assert.deepEqual(localMistake("/status 1 2"), { kind: "usage", command: "/status" });
  assert.deepEqual(localMistake("/quit now"), { kind: "no_argument", command: "/quit" });
  assert.deepEqual(localMistake("/toString"), { kind: "unknown_command", command: "/toString" });
  assert.equal(localMistake("[1]")?.kind, undefined, "a payload, not JSON");
  assert.equal(localMistake("{1}")?.kind, "bad_json");
  assert.equal(localMistake('{"a":1}'), undefined, "the server names unknown fields");
});
