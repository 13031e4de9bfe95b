/**
 * The broker's Lua scripts: each does in one round trip, atomically, what would otherwise take a
 * read and several writes. Keys are built inside from the prefix (`<prefix>:t:<id>` a task's
 * record, `<prefix>:r:<instance>` an instance's results stream, `<prefix>:delayed` scheduled
 * tasks); the broker does not support Redis Cluster, whose scripts must name every key.
 *
 * @module
 */

/**
 * The fields of a batch packed into one argument, each ended by U+0000: one argument per call
 * rather than one per field (~13 per task over accept, start and end) took ~3 µs of asynctask's
 * CPU per task off (node-redis measures, encodes and queues each argument) and cost Redis no more
 * (it parsed each into a string that Lua then copied). No field holds a U+0000: JSON escapes it,
 * and free text is cleared of it before packing (`packable` in redis.ts). A script reads a batch
 * `n` fields at a time with `string.gmatch(packed, fields(n))` (`%Z*` any run of bytes but U+0000,
 * `%z` U+0000): one pattern match per task, its fields straight into locals, where a split into
 * a table took a `string.find` and a `string.sub` per field and a table to keep them in — ~0.3 µs
 * of Redis's CPU per task and script less.
 */
function fields(n: number): string {
  return "'" + "(%Z*)%z".repeat(n) + "'";
}

/**
 * Records a batch of task ends. ARGV: prefix, group, this instance, ms a done task is kept, ms a
 * failed one is kept, and the ends packed ({@linkcode fields}), per end: id, stream, entry id,
 * origin instance, the end (state, attempts, finish time, this instance, task name, result JSON,
 * error code, error message, joined by U+0001). The end is the record's field `e`, set by `HSETNX`:
 * an end already recorded is not recorded again (a task claimed and run twice ends once) without a
 * read first, and the record is the one hash field to write, then expire. A task accepted by
 * another instance gets its end on that instance's results stream. The ended tasks leave the
 * queued index (`<prefix>:queued`, see {@linkcode ACCEPT_SCRIPT}), one `HDEL` per batch. Entries
 * read by a server are acknowledged, one XACK per stream, and trimmed later in bulk
 * ({@linkcode TRIM_SCRIPT}: deleting each one cost ~4.6 µs of Redis's CPU per task); an entry never
 * read (its task ended first, as a cancel does) is deleted, its id marked `!`.
 */
export const END_SCRIPT = `
local p, g, me, ttlOk, ttlFail = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local records = p .. ':t:'
local acks = {}
local ended, n = {}, 0
local recorded = 0
for id, stream, entry, origin, e in string.gmatch(ARGV[6], ${fields(5)}) do
  local key = records .. id
  if redis.call('HSETNX', key, 'e', e) == 1 then
    recorded = recorded + 1
    -- 100: "d", of "done"
    redis.call('PEXPIRE', key, string.byte(e) == 100 and ttlOk or ttlFail)
    if origin ~= '' and origin ~= me then
      local r = p .. ':r:' .. origin
      redis.call('XADD', r, 'MAXLEN', '~', '100000', '*', 'k', 'e', 'i', id, 'e', e)
      redis.call('PEXPIRE', r, 3600000)
    end
  end
  n = n + 1
  ended[n] = id
  local mark = string.byte(entry)
  -- 33: "!", an entry never read
  if mark == 33 then
    redis.call('XDEL', stream, string.sub(entry, 2))
  elseif mark then
    local list = acks[stream]
    if not list then
      list = {}
      acks[stream] = list
    end
    list[#list+1] = entry
  end
end
for j = 1, n, 1000 do
  redis.call('HDEL', p .. ':queued', unpack(ended, j, math.min(j + 999, n)))
end
for stream, ids in pairs(acks) do
  redis.call('XACK', stream, g, unpack(ids))
end
return recorded
`;

/**
 * Claims the entries of a stream that no live instance has touched for `min idle` ms (their
 * instance died: it would have renewed them), for this instance. ARGV: stream, group, this
 * instance, min idle ms, count, prefix. Returns, per claimed entry: its id, its fields, its
 * record's attempts, and how many times it was found running on a server that stopped (this one
 * counted, when it was running — its start in the queued index, which is taken off —; not when it
 * was queued or waiting to retry). Entries whose task
 * has ended already are acknowledged and dropped instead.
 */
export const CLAIM_SCRIPT = `
local stream, g, me, idle, count, p = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local r = redis.call('XAUTOCLAIM', stream, g, me, idle, '0-0', 'COUNT', count)
local out = {}
local ended = {}
for _, e in ipairs(r[2]) do
  if e then
    local fields = e[2]
    local id = ''
    for j = 1, #fields, 2 do if fields[j] == 'i' then id = fields[j+1] end end
    local key = p .. ':t:' .. id
    local h = redis.call('HMGET', key, 'e', 'a', 'ir')
    if h[1] then
      table.insert(ended, e[1])
    else
      local ir = tonumber(h[3] or '0')
      local q = redis.call('HGET', p .. ':queued', id)
      local z = q and string.find(q, '\\1', 1, true)
      if z then
        ir = redis.call('HINCRBY', key, 'ir', 1)
        redis.call('HSET', p .. ':queued', id, string.sub(q, 1, z - 1))
      end
      table.insert(out, {e[1], fields, h[2] or '0', ir, z and 1 or 0})
    end
  end
end
if #ended > 0 then
  redis.call('XACK', stream, g, unpack(ended))
  redis.call('XDEL', stream, unpack(ended))
end
return out
`;

/**
 * Moves scheduled tasks whose time has come into their streams. ARGV: prefix, now (ms), most to
 * move. Returns how many moved.
 */
export const MOVE_DUE_SCRIPT = `
local p, now, limit = ARGV[1], ARGV[2], ARGV[3]
local ids = redis.call('ZRANGEBYSCORE', p .. ':delayed', '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  local payload = redis.call('HGET', p .. ':delayed:data', id)
  if payload then
    local t = cjson.decode(payload)
    redis.call('XADD', t[1], '*', unpack(t[2]))
    redis.call('HSET', p .. ':t:' .. id, 's', 'queued')
  end
  redis.call('ZREM', p .. ':delayed', id)
  redis.call('HDEL', p .. ':delayed:data', id)
end
return #ids
`;

/**
 * Records a batch of accepted tasks. ARGV: prefix, and the tasks packed ({@linkcode fields}), per
 * task: stream, id, task name, run-at (ms, or "" to queue it now), the entry's `t` field. A task due
 * now goes on its stream (fields `i`, its id, and `t`) and in the queued index, `<prefix>:queued`
 * (id → task name, one `HSET` per batch; and the start, see {@linkcode START_SCRIPT}): `/status`
 * finds it there from any server until its end is recorded, and its record (`<prefix>:t:<id>`) is
 * first written when it ends (or fails an attempt, or is claimed) — a hash per task at accept cost
 * a command and a key of Redis's per task. A delayed one gets its record now, and
 * waits in `<prefix>:delayed` (see {@linkcode MOVE_DUE_SCRIPT}). Returns the tasks' entry ids in
 * one text, separated by spaces ("" for a delayed one): one string to decode, not one per task.
 */
export const ACCEPT_SCRIPT = `
local p = ARGV[1]
local out, n = {}, 0
local queued, nq = {}, 0
for stream, id, task, runAt, t in string.gmatch(ARGV[2], ${fields(5)}) do
  n = n + 1
  if runAt == '' then
    out[n] = redis.call('XADD', stream, '*', 'i', id, 't', t)
    queued[nq+1] = id
    queued[nq+2] = task
    nq = nq + 2
  else
    redis.call('HSET', p .. ':t:' .. id, 's', 'scheduled', 'n', task)
    redis.call('HSET', p .. ':delayed:data', id, cjson.encode({stream, {'i', id, 't', t}}))
    redis.call('ZADD', p .. ':delayed', runAt, id)
    out[n] = ''
  end
end
for j = 1, nq, 2000 do
  redis.call('HSET', p .. ':queued', unpack(queued, j, math.min(j + 1999, nq)))
end
return table.concat(out, ' ')
`;

/**
 * Records that tasks started here: in the queued index (see {@linkcode ACCEPT_SCRIPT}), the task
 * name becomes the name, U+0001 and the start (attempt and instance), one `HSET` per batch — a
 * field each to overwrite, where an `HSET` per task on its record cost ~0.9 µs more of Redis's CPU
 * per task. The end's `HDEL` takes it out again, and the record's end (`e`) comes first wherever
 * a task's state is read: a start written after its end (a task claimed and run twice) leaves a
 * stale field, never a wrong state. ARGV: prefix, and the tasks packed ({@linkcode fields}), per
 * task: id, task name U+0001 attempt and instance.
 */
export const START_SCRIPT = `
local kv, n = {}, 0
for id, v in string.gmatch(ARGV[2], ${fields(2)}) do
  kv[n+1] = id
  kv[n+2] = v
  n = n + 2
end
for j = 1, n, 2000 do
  redis.call('HSET', ARGV[1] .. ':queued', unpack(kv, j, math.min(j + 1999, n)))
end
return 0
`;

/**
 * Trims the task streams of entries that every server is done with: those older than the oldest
 * entry still pending (read and not ended), or, with none pending, than the last one read. ARGV:
 * group, then the streams. Returns how many entries went.
 */
export const TRIM_SCRIPT = `
local g = ARGV[1]
local trimmed = 0
for i = 2, #ARGV do
  local stream = ARGV[i]
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', stream)
  if ok then
    local last
    for _, info in ipairs(groups) do
      local name, delivered
      for j = 1, #info, 2 do
        if info[j] == 'name' then name = info[j+1] elseif info[j] == 'last-delivered-id' then delivered = info[j+1] end
      end
      if name == g then last = delivered end
    end
    if last and last ~= '0-0' then
      local pending = redis.call('XPENDING', stream, g)
      local keep = last
      if pending[1] > 0 then keep = pending[2] end
      trimmed = trimmed + redis.call('XTRIM', stream, 'MINID', keep)
    end
  end
end
return trimmed
`;

/**
 * Takes a block of task ids: `INCRBY <prefix>:ids`, but never below the highest id any server says
 * it has taken (`ids` in each server's entry of `<prefix>:instances`, and ARGV[3], this server's):
 * after Redis restarts without persistence, the counter starts again from 0, and ids must not.
 * ARGV: prefix, block size, this server's highest id. Returns the block's last id.
 */
export const IDS_SCRIPT = `
local p, n, floor = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for _, json in ipairs(redis.call('HVALS', p .. ':instances')) do
  local ok, m = pcall(cjson.decode, json)
  if ok and type(m) == 'table' and tonumber(m.ids) and tonumber(m.ids) > floor then floor = tonumber(m.ids) end
end
local key = p .. ':ids'
local cur = tonumber(redis.call('GET', key) or '0')
if cur < floor then redis.call('SET', key, floor) end
return redis.call('INCRBY', key, n)
`;

/**
 * Records a failed attempt (unless the task's end is recorded already): queued again, its start
 * taken off the queued index. ARGV: prefix, task id, attempts.
 */
export const ATTEMPT_SCRIPT = `
local key, index, id = ARGV[1] .. ':t:' .. ARGV[2], ARGV[1] .. ':queued', ARGV[2]
if redis.call('HEXISTS', key, 'e') == 0 then
  redis.call('HSET', key, 's', 'queued', 'a', ARGV[3])
  local q = redis.call('HGET', index, id)
  local z = q and string.find(q, '\\1', 1, true)
  if z then redis.call('HSET', index, id, string.sub(q, 1, z - 1)) end
end
return 0
`;

/**
 * Hands entries back to the queue: each task goes to the end of its stream as a new entry (any
 * server may read it), from the fields the server kept (`i`, `t`) and its attempts so far (`a`)
 * — not copied from the old entry, which a Redis restarted empty no longer has —, is queued again
 * in the queued index (`/status`, and no server takes it for lost), and the old entry is
 * acknowledged and deleted. Safe to run again (a reply lost, the call retried): a task whose end is
 * recorded, whose old entry another server has claimed, or that was handed back from this entry
 * already (`<prefix>:handedback:<id>` names the entry, for an hour) is left alone. ARGV: prefix,
 * group, this server, then per task: stream, entry, id, `t`, attempts, task name.
 */
export const HAND_BACK_SCRIPT = `
local p, g, me = ARGV[1], ARGV[2], ARGV[3]
for i = 4, #ARGV, 6 do
  local stream, entry, id = ARGV[i], ARGV[i+1], ARGV[i+2]
  local mark = p .. ':handedback:' .. id
  local ok, pending = pcall(redis.call, 'XPENDING', stream, g, entry, entry, 1)
  local claimed = ok and pending[1] and pending[1][2] ~= me
  if not claimed and redis.call('HEXISTS', p .. ':t:' .. id, 'e') == 0 and redis.call('GET', mark) ~= entry then
    redis.call('XADD', stream, '*', 'i', id, 't', ARGV[i+3], 'a', ARGV[i+4])
    redis.call('HSET', p .. ':queued', id, ARGV[i+5])
    redis.call('SET', mark, entry, 'PX', 3600000)
  end
  if not claimed then
    redis.call('XACK', stream, g, entry)
    redis.call('XDEL', stream, entry)
  end
end
return 0
`;

/**
 * Which of the tasks named in ARGV (after the prefix) Redis no longer has (it lost them): neither
 * a record nor a place in the queued index. Returns their positions (1-based, after the prefix).
 */
export const MISSING_SCRIPT = `
local p = ARGV[1]
local out = {}
for i = 2, #ARGV do
  if redis.call('EXISTS', p .. ':t:' .. ARGV[i]) == 0 and redis.call('HEXISTS', p .. ':queued', ARGV[i]) == 0 then
    out[#out+1] = i - 1
  end
end
return out
`;
