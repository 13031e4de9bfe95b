/**
 * The broker's Lua scripts: each does in one round trip, atomically, what would otherwise take a
 * read and several writes. Keys are built inside from the prefix (`<prefix>:t:<id>` a task's
 * record, `<prefix>:r:<instance>` an instance's results stream, `<prefix>:delayed` scheduled
 * tasks); the broker does not support Redis Cluster, whose scripts must name every key.
 *
 * @module
 */

/**
 * Records a batch of task ends. ARGV: prefix, group, this instance, ms a done task is kept, ms a
 * failed one is kept, now; then per end: id, stream, entry id, state, attempts, result JSON, error
 * code, error message, origin instance. An end already recorded is not recorded again (a task
 * claimed and run twice ends once); a task accepted by another instance gets its end on that
 * instance's results stream. Entries read by a server are acknowledged, one XACK per stream, and
 * trimmed later in bulk ({@linkcode TRIM_SCRIPT}: deleting each one cost ~4.6 µs of Redis's CPU per
 * task); an entry never read (its task ended first, as a cancel does) is deleted, its id marked `!`.
 */
export const END_SCRIPT = `
local p, g, me, ttlOk, ttlFail, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local acks = {}
local recorded = 0
for i = 7, #ARGV, 9 do
  local id, stream, entry, state = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3]
  local key = p .. ':t:' .. id
  local s = redis.call('HGET', key, 's')
  if s ~= 'done' and s ~= 'failed' then
    recorded = recorded + 1
    if state == 'done' then
      redis.call('HSET', key, 's', 'done', 'a', ARGV[i+4], 'j', ARGV[i+5], 'ft', now, 'x', me)
      redis.call('PEXPIRE', key, ttlOk)
    else
      redis.call('HSET', key, 's', 'failed', 'a', ARGV[i+4], 'c', ARGV[i+6], 'm', ARGV[i+7], 'ft', now, 'x', me)
      redis.call('PEXPIRE', key, ttlFail)
    end
    local origin = ARGV[i+8]
    if origin ~= '' and origin ~= me then
      local r = p .. ':r:' .. origin
      redis.call('XADD', r, 'MAXLEN', '~', '100000', '*', 'k', 'e', 'i', id, 's', state, 'a', ARGV[i+4],
        'j', ARGV[i+5], 'c', ARGV[i+6], 'm', ARGV[i+7])
      redis.call('PEXPIRE', r, 3600000)
    end
  end
  if string.sub(entry, 1, 1) == '!' then
    redis.call('XDEL', stream, string.sub(entry, 2))
  elseif entry ~= '' then
    if not acks[stream] then acks[stream] = {} end
    table.insert(acks[stream], entry)
  end
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
 * counted, when it was running; not when it was queued or waiting to retry). Entries whose task
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
    local h = redis.call('HMGET', key, 's', 'a', 'ir')
    if h[1] == 'done' or h[1] == 'failed' then
      table.insert(ended, e[1])
    else
      local ir = tonumber(h[3] or '0')
      if h[1] == 'running' then
        ir = redis.call('HINCRBY', key, 'ir', 1)
        redis.call('HSET', key, 's', 'queued')
      end
      table.insert(out, {e[1], fields, h[2] or '0', ir, h[1] == 'running' and 1 or 0})
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
 * Records a batch of accepted tasks. ARGV: prefix, this instance; then per task: id, stream, task
 * name, format, run-at (ms, or "" to queue it now), the count of its entry's fields, the fields. A
 * task due now goes on its stream; a delayed one waits in `<prefix>:delayed` (see
 * {@linkcode MOVE_DUE_SCRIPT}). Returns each task's entry id ("" for a delayed one).
 */
export const ACCEPT_SCRIPT = `
local p, me = ARGV[1], ARGV[2]
local out = {}
local i = 3
while i <= #ARGV do
  local id, stream, task, format, runAt, n = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4], tonumber(ARGV[i+5])
  local fields = {}
  for j = 1, n do fields[j] = ARGV[i+5+j] end
  i = i + 6 + n
  local key = p .. ':t:' .. id
  if runAt == '' then
    redis.call('HSET', key, 's', 'queued', 'n', task, 'o', me, 'f', format)
    out[#out+1] = redis.call('XADD', stream, '*', unpack(fields))
  else
    redis.call('HSET', key, 's', 'scheduled', 'n', task, 'o', me, 'f', format)
    redis.call('HSET', p .. ':delayed:data', id, cjson.encode({stream, fields}))
    redis.call('ZADD', p .. ':delayed', runAt, id)
    out[#out+1] = ''
  end
end
return out
`;

/**
 * Records that tasks started here (unless their end is recorded already: a start written late,
 * after a reconnection, does not undo it). ARGV: prefix, this instance; then per task: id, attempt.
 */
export const START_SCRIPT = `
local p, me = ARGV[1], ARGV[2]
for i = 3, #ARGV, 2 do
  local key = p .. ':t:' .. ARGV[i]
  local s = redis.call('HGET', key, 's')
  if s ~= 'done' and s ~= 'failed' then redis.call('HSET', key, 's', 'running', 'x', me, 'ra', ARGV[i+1]) end
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

/** Records a failed attempt (unless the task's end is recorded already). ARGV: the record's key, attempts. */
export const ATTEMPT_SCRIPT = `
local s = redis.call('HGET', ARGV[1], 's')
if s ~= 'done' and s ~= 'failed' then redis.call('HSET', ARGV[1], 's', 'queued', 'a', ARGV[2]) end
return 0
`;

/**
 * Hands entries back to the queue: each is copied to the end of its stream as a new entry (any
 * server may read it), then acknowledged and deleted. ARGV: group, then pairs of stream and entry.
 */
export const HAND_BACK_SCRIPT = `
local g = ARGV[1]
for i = 2, #ARGV, 2 do
  local stream, entry = ARGV[i], ARGV[i+1]
  local e = redis.call('XRANGE', stream, entry, entry)
  if e[1] then redis.call('XADD', stream, '*', unpack(e[1][2])) end
  redis.call('XACK', stream, g, entry)
  redis.call('XDEL', stream, entry)
end
return 0
`;

/** Which of the task records named in ARGV exist no more (Redis lost them). Returns their keys' positions (1-based). */
export const MISSING_SCRIPT = `
local out = {}
for i = 1, #ARGV do
  if redis.call('EXISTS', ARGV[i]) == 0 then out[#out+1] = i end
end
return out
`;
