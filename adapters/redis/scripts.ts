/**
 * The Lua of the Redis adapters, and how it is run.
 *
 * Each script is a constant: data reaches it only through KEYS and ARGV, never
 * by building source text. Scripts run with EVALSHA; when Redis answers
 * NOSCRIPT (its script cache was emptied: a restart, a failover, SCRIPT FLUSH)
 * the call is sent again with EVAL, which caches the script for the next ones.
 *
 * Numbers: Lua formats numbers of 15 digits or more as `1.2e+14` when they are
 * turned into strings implicitly, so every number that goes into a command or
 * an id is formatted with `int()` (`%d`).
 */
import { createHash } from 'node:crypto'

/**
 * The part of a node-redis v5 client the Redis adapters use. Any client made
 * by `createClient()` or `duplicate()` fits, whatever its modules, RESP version
 * or type mapping: replies are decoded by the adapters themselves.
 */
export interface RedisCommandClient {
  sendCommand (args: readonly string[]): Promise<unknown>
}

export interface LuaScript {
  /** for error messages */
  readonly name: string
  readonly source: string
  /** SHA1 of `source`, as EVALSHA wants it */
  readonly sha1: string
  /** how many of the arguments are KEYS; -1 when the caller decides (the script reads #KEYS) */
  readonly numberOfKeys: number
}

function defineLua (name: string, numberOfKeys: number, source: string): LuaScript {
  return { name, source, sha1: createHash('sha1').update(source).digest('hex'), numberOfKeys }
}

// ---------------------------------------------------------------- op log
//
// The keys of one project's log (keys.ts), always in this order, all with the
// project's hash tag: KEYS[1] meta (hash: `epoch`, `seq` = head, `bytes` =
// size of the kept ops), KEYS[2] ops (stream: entry `<seq>-0`, field `op`),
// KEYS[3] sizes (list: the size of each kept op, oldest first; its length is
// the number of kept ops, so the oldest kept seq is head - LLEN + 1), KEYS[4]
// ids and KEYS[5] ids:old (hashes: op id -> seq, two generations), KEYS[6]
// snap (hash: the newest snapshot, `epoch`, `seq`, `state`). The read-only
// scripts take the first keys of that list only. An op's size is
// the byte length of its stored JSON (`#ARGV` in Lua, Buffer.byteLength in
// Node: the same for the UTF-8 node-redis sends).

/**
 * Shared by the scripts that write a log (APPEND, OPEN, SNAPSHOT_PUT); they
 * take all six keys.
 *
 * keep(ttl) gives every key of the log the idle TTL (ms; '0': none), so the
 * keys of a project expire together and an active project keeps them all.
 *
 * ensure(candidate) returns the project's epoch, head, kept bytes and whether
 * it created the log. A project without meta gets `candidate` as its epoch,
 * its head continuing above anything the other keys still hold (the stream's
 * last generated id, the highest remembered op id), so a seq is never given
 * to two ops while a trace of the first remains, and XADD never meets an id
 * below the stream's top; what is left of the stream and the sizes is
 * dropped. A log whose ops, sizes or ids key is gone while it counts kept
 * ops (a key evicted or deleted alone) gets a new epoch the same way: its
 * history and its idempotency can no longer be trusted, so its readers get
 * `reset` instead of a gap or a silent duplicate.
 */
const OP_LOG = `
local function int(n) return string.format('%d', n) end

local function keep(ttl)
  if ttl ~= '0' then
    for i = 1, 6 do redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end

-- The seq up to which the snapshot of this epoch covers the log (-1: no snapshot).
local function covered(epoch)
  local s = redis.call('HMGET', KEYS[6], 'epoch', 'seq')
  if s[1] == epoch then return tonumber(s[2]) or -1 end
  return -1
end

-- Drops the oldest kept ops (the sizes popped, the stream trimmed by MINID ~)
-- while the history of the log at \`head\` holds more than \`most\` ops or
-- \`limit\` bytes, the newest op always kept, and only while the oldest is
-- covered by the snapshot of \`epoch\` or the history is past twice the
-- bounds. Returns the bytes kept.
local function trim(epoch, head, kept, bytes, most, limit)
  local dropped, floor = false, nil
  while kept > 1 and (kept > most or bytes > limit) do
    if not (kept > 2 * most or bytes > 2 * limit) then
      floor = floor or covered(epoch)
      if floor >= 0 and head - kept + 1 > floor then break end
    end
    bytes = bytes - tonumber(redis.call('LPOP', KEYS[3]))
    kept = kept - 1
    dropped = true
  end
  if dropped then redis.call('XTRIM', KEYS[2], 'MINID', '~', int(head - kept + 1) .. '-0') end
  return bytes
end

local function highestId(i, seq)
  for _, v in ipairs(redis.call('HVALS', KEYS[i])) do
    local n = tonumber(v)
    if n and n > seq then seq = n end
  end
  return seq
end

local function ensure(candidate)
  local m = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'bytes')
  local seq = tonumber(m[2]) or 0
  if m[1] then
    local bytes = tonumber(m[3]) or 0
    if bytes == 0 or redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4]) == 3 then return m[1], seq, bytes, false end
  else
    if redis.call('EXISTS', KEYS[2]) == 1 then
      local info = redis.call('XINFO', 'STREAM', KEYS[2])
      for i = 1, #info, 2 do
        if info[i] == 'last-generated-id' then
          local last = tonumber(string.match(info[i + 1], '^(%d+)')) or 0
          if last > seq then seq = last end
        end
      end
    end
    seq = highestId(5, highestId(4, seq))
  end
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[6])
  redis.call('HSET', KEYS[1], 'epoch', candidate, 'seq', int(seq), 'bytes', '0')
  return candidate, seq, 0, true
end

-- \`seen\`: what the caller saw of this log, as \`<epoch> <seq>\` pairs
-- separated by spaces ('' for nothing seen): the seq it saw in each epoch it
-- remembers. A head below the seq seen in the log's epoch means the store
-- lost ops that were acked or delivered: the log moves to \`candidate\`,
-- keeping its ops, head and ids, and its snapshot when the snapshot covers
-- no more than the head (else the snapshot goes). Returns true when it did.
local function fence(candidate, seen)
  if seen == '' then return false end
  local m = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
  if not m[1] then return false end
  local head = tonumber(m[2]) or 0
  local known
  for e, n in string.gmatch(seen, '(%S+) (%S+)') do
    if e == m[1] then
      known = tonumber(n)
      break
    end
  end
  if not known or head >= known then return false end
  redis.call('HSET', KEYS[1], 'epoch', candidate)
  local s = redis.call('HMGET', KEYS[6], 'epoch', 'seq')
  if s[1] == m[1] then
    if (tonumber(s[2]) or 0) <= head then redis.call('HSET', KEYS[6], 'epoch', candidate) else redis.call('DEL', KEYS[6]) end
  end
  return true
end
`

/**
 * APPEND, one or more ops of one project in one call. KEYS: meta, ops,
 * sizes, ids, ids:old, snap.
 * ARGV: [1] candidate epoch, [2] history limit (ops), [3] history bytes,
 * [4] id retention, [5] idle TTL ms ('0': none), [6] channel to PUBLISH the
 * sequenced ops on, '' for none, [7] [8] [9] the message around the two
 * values only the script knows and the op's JSON (sent once, not twice):
 * `[7] .. epoch .. [8] .. seq .. [9] .. json without its opening brace ..
 * '}}'` (codec.ts, opEnvelopeParts); [10] what this instance saw of the
 * log (`<epoch> <seq>` pairs, '' for nothing), for fence(): a log that lost
 * ops the caller saw moves to a new epoch before the ops are appended; then
 * three per op, in arrival order:
 * '0' to append only to an existing log or '1' to create it, the op's
 * idempotency key (`<userId>\n<op id>`, lib/ids.ts), the op as JSON without
 * `project` and `seq`.
 *
 * Each op is taken in turn exactly as if it came alone, after the ones
 * before it: an op with '0' while the project has no log is missing
 * (nothing written); otherwise the log is created if there is none (ensure,
 * once per call: after it the log exists), the id is checked in both
 * generations (so the second of two ops with one id in the same call is a
 * duplicate of the first), and a new op gets the next seq by XADD, its size
 * pushed and its id remembered (`ids` becomes `ids:old` by RENAME when it
 * holds [4] ids: no per-append trim of the ids).
 *
 * Returns {epoch, created, fenced, code, seq, code, seq, ...}: the log's
 * epoch ('' when every op was missing), the 1-based position of the op
 * whose turn created the log (0: none), 1 when fence() moved the log to a
 * new epoch (else 0), then per op 1 and its seq when appended, 0 and
 * the original seq when the id was already accepted (nothing written then,
 * except a new epoch, and nothing published), 2 and 0 when missing.
 *
 * Once per call, after the ops: the history is trimmed from its oldest op
 * while it holds more than [2] ops or [3] bytes, the newest op always kept,
 * and only while that oldest op is covered by the snapshot of the epoch (its
 * seq at most the snapshot's) or the history holds more than twice [2] or
 * [3]: the ops after a snapshot stay up to twice the bounds. Trimming once
 * after the ops leaves what trimming after each would (the condition only
 * grows as ops are added). The sizes list pops (so no op is read back) and
 * XTRIM MINID ~ frees the stream's nodes below the oldest kept seq (whole
 * nodes only: a few entries may linger, which reads never serve). Then the
 * head and bytes in meta, the idle TTL on every key, and one PUBLISH of the
 * appended ops: one op alone is one envelope, several are their envelopes
 * joined by '\n' (JSON text never holds a raw newline: codec.ts,
 * decodeMessage). The PUBLISH happens in the script, so the messages of a
 * project go out in seq order.
 */
export const APPEND = defineLua('append', 6, OP_LOG + `
local most, limit, retention = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local epoch, head, bytes, kept
local ids, made, n = 0, 0, 0
local out = {'', 0, fence(ARGV[1], ARGV[10]) and 1 or 0}
local published = {}
for i = 11, #ARGV, 3 do
  n = n + 1
  if not epoch and ARGV[i] == '0' and redis.call('EXISTS', KEYS[1]) == 0 then
    out[#out + 1] = 2
    out[#out + 1] = 0
  else
    if not epoch then
      local created
      epoch, head, bytes, created = ensure(ARGV[1])
      if created then made = n end
      ids = redis.call('HLEN', KEYS[4])
    end
    local key, json = ARGV[i + 1], ARGV[i + 2]
    local seen = redis.call('HGET', KEYS[4], key) or redis.call('HGET', KEYS[5], key)
    if seen then
      out[#out + 1] = 0
      out[#out + 1] = tonumber(seen)
    else
      head = head + 1
      local seq = int(head)
      redis.call('XADD', KEYS[2], seq .. '-0', 'op', json)
      kept = redis.call('RPUSH', KEYS[3], int(#json))
      bytes = bytes + #json
      if ids >= retention then
        redis.call('RENAME', KEYS[4], KEYS[5])
        ids = 0
      end
      redis.call('HSET', KEYS[4], key, seq)
      ids = ids + 1
      out[#out + 1] = 1
      out[#out + 1] = head
      if ARGV[6] ~= '' then
        published[#published + 1] = ARGV[7] .. epoch .. ARGV[8] .. seq .. ARGV[9] .. string.sub(json, 2) .. '}}'
      end
    end
  end
end
if kept then
  bytes = trim(epoch, head, kept, bytes, most, limit)
  redis.call('HSET', KEYS[1], 'seq', int(head), 'bytes', int(bytes))
end
if epoch then
  keep(ARGV[5])
  out[1] = epoch
end
out[2] = made
if #published > 0 then redis.call('PUBLISH', ARGV[6], table.concat(published, '\\n')) end
return out
`)

/**
 * READ, read only. KEYS: meta, ops, sizes.
 * ARGV: [1] since, [2] limit, [3] max bytes, [4] '1' when the caller gave an
 * epoch, [5] that epoch ('' for none: a project without a log).
 *
 * Returns {epoch ('' when the project has no log), head, reset (0 or 1), id,
 * json, id, json, ...}: the entries with since < seq, oldest first, at most
 * limit, and after the first none that would take the page past max bytes.
 * Reset (and no entry) when the caller's epoch is not the current one, since
 * > head, or the entry since + 1 is no longer kept. The page's length is
 * decided from the sizes list (read in chunks of 128 numbers) before the
 * stream is read, and XRANGE fetches exactly those entries: the script never
 * holds more than the page, which is at most max bytes or one op.
 */
export const READ = defineLua('read', 3, `
local m = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
local epoch, head = '', 0
if m[1] then epoch, head = m[1], tonumber(m[2]) or 0 end
local since = tonumber(ARGV[1])
if (ARGV[4] == '1' and ARGV[5] ~= epoch) or since > head then return {epoch, head, 1} end
if since == head then return {epoch, head, 0} end
local from = since + 1 - (head - redis.call('LLEN', KEYS[3]) + 1)
if from < 0 then return {epoch, head, 1} end
local want = math.min(tonumber(ARGV[2]), head - since)
local budget = tonumber(ARGV[3])
local n, total, full = 0, 0, false
while n < want and not full do
  local sizes = redis.call('LRANGE', KEYS[3], from + n, from + math.min(want, n + 128) - 1)
  if #sizes == 0 then break end
  for _, size in ipairs(sizes) do
    size = tonumber(size)
    if n > 0 and total + size > budget then
      full = true
      break
    end
    total = total + size
    n = n + 1
  end
end
if n == 0 then return {epoch, head, 1} end
local first = string.format('%d', since + 1) .. '-0'
local entries = redis.call('XRANGE', KEYS[2], first, '+', 'COUNT', n)
if #entries == 0 or entries[1][1] ~= first then return {epoch, head, 1} end
local out = {epoch, head, 0}
for _, entry in ipairs(entries) do
  out[#out + 1] = entry[1]
  out[#out + 1] = entry[2][2]
end
return out
`)

/** HEAD, read only. KEYS: meta. Returns {epoch ('' when the project has no log), head}. */
export const HEAD = defineLua('head', 1, `
local m = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
if not m[1] then return {'', 0} end
return {m[1], tonumber(m[2]) or 0}
`)

/**
 * OPEN. KEYS: meta, ops, sizes, ids, ids:old, snap. ARGV: [1] candidate epoch, [2]
 * idle TTL ms ('0': none), [3] what the caller saw of the log (see fence;
 * '' for nothing). Moves a log that lost ops the
 * caller saw to a new epoch (fence), creates the log when the project has
 * none (see ensure), extends its TTL. Returns {epoch, head, created (0 or
 * 1), fenced (0 or 1)}.
 */
export const OPEN = defineLua('open', 6, OP_LOG + `
local fenced = fence(ARGV[1], ARGV[3])
local epoch, head, _, created = ensure(ARGV[1])
keep(ARGV[2])
return {epoch, head, created and 1 or 0, fenced and 1 or 0}
`)

/**
 * FENCE. KEYS: meta, ops, sizes, ids, ids:old, snap. ARGV: [1] candidate
 * epoch, [2] what the caller saw of the log (see fence). Moves a log
 * that lost ops the caller saw to a new epoch (fence); creates nothing and
 * leaves the TTL. Returns {epoch ('' when the project has no log), head,
 * fenced (0 or 1)}.
 */
export const FENCE = defineLua('fence', 6, OP_LOG + `
local fenced = fence(ARGV[1], ARGV[2])
local m = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
if not m[1] then return {'', 0, 0} end
return {m[1], tonumber(m[2]) or 0, fenced and 1 or 0}
`)

/**
 * TOUCH. KEYS: meta, ops, sizes, ids, ids:old, snap. ARGV: [1] idle TTL ms.
 * Extends the TTL of every key of the log when the project has one (its
 * meta); creates nothing. Returns 1 when it did, else 0.
 */
export const TOUCH = defineLua('touch', 6, `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 1, 6 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return 1
`)

/**
 * SNAPSHOT_PUT. KEYS: meta, ops, sizes, ids, ids:old, snap. ARGV: [1] the
 * snapshot's epoch, [2] its seq, [3] its state as JSON, [4] history limit
 * (ops), [5] history bytes, [6] idle TTL ms ('0': none).
 *
 * Stores the snapshot when, in this one step, [1] is the log's epoch, [2] is
 * at most its head, and the stored snapshot of that epoch (if any) has a
 * lower seq; then trims the history the snapshot now covers down to the
 * bounds, as APPEND would, and extends the log's TTL. Creates no log.
 * Returns {1} when stored, {0, reason}: 'epoch' (no log, or another epoch),
 * 'ahead' (seq above the head), 'older' (a snapshot at this seq or newer is
 * stored).
 */
export const SNAPSHOT_PUT = defineLua('snapshot put', 6, OP_LOG + `
local m = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'bytes')
if not m[1] or m[1] ~= ARGV[1] then return {0, 'epoch'} end
local head, seq = tonumber(m[2]) or 0, tonumber(ARGV[2])
if seq > head then return {0, 'ahead'} end
local s = redis.call('HMGET', KEYS[6], 'epoch', 'seq')
if s[1] == m[1] and (tonumber(s[2]) or -1) >= seq then return {0, 'older'} end
redis.call('HSET', KEYS[6], 'epoch', m[1], 'seq', int(seq), 'state', ARGV[3])
local bytes = trim(m[1], head, redis.call('LLEN', KEYS[3]), tonumber(m[3]) or 0, tonumber(ARGV[4]), tonumber(ARGV[5]))
redis.call('HSET', KEYS[1], 'bytes', int(bytes))
keep(ARGV[6])
return {1}
`)

/**
 * SNAPSHOT_GET, read only. KEYS: meta, snap. Returns {epoch, seq, state} of
 * the stored snapshot when it is of the log's current epoch, else {}.
 */
export const SNAPSHOT_GET = defineLua('snapshot get', 2, `
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return {} end
local s = redis.call('HMGET', KEYS[2], 'epoch', 'seq', 'state')
if s[1] ~= epoch or not s[3] then return {} end
return {s[1], tonumber(s[2]), s[3]}
`)

// ---------------------------------------------------------------- sessions
//
// The keys of one script call all carry one session partition's hash tag
// (keys.ts), so each call touches one cluster slot; the instance leases are
// global keys and are read by plain commands, never by a script.
//
// A session is a field of its project's hash, value
// `<instance>\n<member JSON without presence>\n<version>\n<presence JSON>`
// (JSON has no raw newline): setPresence replaces the last two parts by
// string operations, so the member's JSON is never re-encoded by Lua. Its
// ref `<project>\n<session id>` is its member in the partition's expiry zset
// and in the owner's owned set. Times are Redis' (TIME), in ms.

const NOW = `local function int(n) return string.format('%d', n) end
local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`

/**
 * SESSION_ADD. KEYS: [1] the project's sessions hash, [2] expiry zset, [3]
 * the instance's owned set, [4] instances zset.
 * ARGV: [1] session id, [2] value, [3] ttl ms, [4] ref, [5] instance id.
 * Adds or replaces the session with a fresh expiry, and registers the
 * instance in the partition. Returns the previous owner when the session
 * was another instance's (its owned set still names it), else nil.
 */
export const SESSION_ADD = defineLua('session-add', 4, `${NOW}
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], int(now + tonumber(ARGV[3])), ARGV[4])
redis.call('SADD', KEYS[3], ARGV[4])
redis.call('ZADD', KEYS[4], int(now), ARGV[5])
-- Live instances refresh these keys; with none left they go after 4 session TTLs.
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], int(tonumber(ARGV[3]) * 4)) end
if old then
  local owner = string.sub(old, 1, string.find(old, '\\n', 1, true) - 1)
  if owner ~= ARGV[5] then return owner end
end
return false`)

/**
 * SESSION_REMOVE. KEYS: [1] sessions hash, [2] expiry zset, [3] the
 * caller's owned set. ARGV: [1] session id, [2] ref.
 * Removes the session (expired or not, as long as reap has not taken it)
 * and returns its value; nil when it is not there.
 */
export const SESSION_REMOVE = defineLua('session-remove', 3, `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('SREM', KEYS[3], ARGV[2])
return v`)

/**
 * SESSION_SET_PRESENCE. KEYS: [1] sessions hash, [2] expiry zset.
 * ARGV: [1] session id, [2] ref, [3] version ('' for none), [4] presence JSON.
 * Returns 0 when the session is not there or past its TTL; else 1, after
 * replacing version and presence when ARGV[3] is '' (the stored version is
 * kept) or greater than the stored version.
 */
export const SESSION_SET_PRESENCE = defineLua('session-set-presence', 2, `${NOW}
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local exp = redis.call('ZSCORE', KEYS[2], ARGV[2])
if not exp or tonumber(exp) <= now then return 0 end
local a = string.find(v, '\\n', 1, true)
local b = string.find(v, '\\n', a + 1, true)
local c = string.find(v, '\\n', b + 1, true)
local version = string.sub(v, b + 1, c - 1)
if ARGV[3] ~= '' then
  if tonumber(ARGV[3]) <= tonumber(version) then return 1 end
  version = ARGV[3]
end
redis.call('HSET', KEYS[1], ARGV[1], string.sub(v, 1, b) .. version .. '\\n' .. ARGV[4])
return 1`)

/**
 * SESSION_LIST. KEYS: [1] sessions hash, [2] expiry zset. ARGV: [1] the
 * project's ref prefix `<project>\n`. Returns the values of the sessions
 * before their expiry.
 */
export const SESSION_LIST = defineLua('session-list', 2, `${NOW}
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local exp = redis.call('ZSCORE', KEYS[2], ARGV[1] .. all[i])
  if exp and tonumber(exp) > now then out[#out + 1] = all[i + 1] end
end
return out`)

/**
 * SESSION_REFRESH, one partition. KEYS: [1] expiry zset, [2] the instance's
 * owned set, [3] instances zset, [4...] the sessions hashes of the projects
 * named. ARGV: [1] ttl ms, [2] instance id, [3] SSCAN cursor of the owned
 * set, [4] SSCAN count, then per session: KEYS index of its hash, session
 * id, ref.
 *
 * Registers the instance in the partition (now); extends each named session
 * that is there and before its expiry (and puts it back in the owned set
 * when the session is the instance's); sweeps one SSCAN step of the owned
 * set, dropping refs that are no longer in the expiry zset (removed,
 * reaped), so the set never outgrows the instance's live sessions; and when
 * the owned set is empty, unregisters the instance from the partition.
 * Returns {next cursor, owned count, {1-based positions of the sessions
 * that are not there}}.
 */
export const SESSION_REFRESH = defineLua('session-refresh', -1, `${NOW}
local me = ARGV[2]
local mine = me .. '\\n'
redis.call('ZADD', KEYS[3], int(now), me)
local missing = {}
local n = 0
for i = 5, #ARGV, 3 do
  n = n + 1
  local hash = KEYS[tonumber(ARGV[i])]
  local exp = redis.call('ZSCORE', KEYS[1], ARGV[i + 2])
  local v = exp and tonumber(exp) > now and redis.call('HGET', hash, ARGV[i + 1])
  if v then
    redis.call('ZADD', KEYS[1], 'XX', int(now + tonumber(ARGV[1])), ARGV[i + 2])
    if string.sub(v, 1, #mine) == mine then redis.call('SADD', KEYS[2], ARGV[i + 2]) end
  else
    missing[#missing + 1] = n
  end
end
local scan = redis.call('SSCAN', KEYS[2], ARGV[3], 'COUNT', ARGV[4])
for _, ref in ipairs(scan[2]) do
  if not redis.call('ZSCORE', KEYS[1], ref) then redis.call('SREM', KEYS[2], ref) end
end
local owned = redis.call('SCARD', KEYS[2])
if owned == 0 then redis.call('ZREM', KEYS[3], me) end
-- Live instances keep their partitions' keys; with none left they go after 4 session TTLs.
local keep = int(tonumber(ARGV[1]) * 4)
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], keep) end
return {scan[1], owned, missing}`)

/**
 * SESSION_SCAN, one partition, read only. KEYS: [1] instances zset, [2]
 * expiry zset. ARGV: [1] at most this many expired refs.
 * Returns {{instance, registered at, ...}, {expired ref, ...}}.
 */
export const SESSION_SCAN = defineLua('session-scan', 2, `${NOW}
return {redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES'), redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', int(now), 'LIMIT', 0, ARGV[1])}`)

/**
 * SESSION_FORGET_INSTANCE, one partition. KEYS: [1] instances zset, [2] the
 * dead instance's owned set, [3] expiry zset. ARGV: [1] instance id, [2] its
 * registration time as SESSION_SCAN saw it.
 * The caller found the instance's lease gone. Unless the instance registered
 * again since the scan (a stalled instance that came back), its sessions
 * expire now (score 0), its owned set is deleted and it leaves the
 * partition. Returns the refs it expired, or nil when it changed nothing.
 */
export const SESSION_FORGET_INSTANCE = defineLua('session-forget-instance', 3, `
local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not seen or tonumber(seen) ~= tonumber(ARGV[2]) then return false end
local out = {}
for _, ref in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('ZSCORE', KEYS[3], ref) then
    redis.call('ZADD', KEYS[3], 'XX', 0, ref)
    out[#out + 1] = ref
  end
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
return out`)

/**
 * SESSION_REAP, one partition. KEYS: [1] expiry zset, [2...] the sessions
 * hashes of the projects named. ARGV: per session: KEYS index of its hash,
 * session id, ref.
 * Takes each named session whose expiry has passed (checked again here: a
 * refresh or an add since the scan keeps it): removes it from the expiry
 * zset and its hash. Returns {position, value, ...} for the sessions it
 * removed from a hash (1-based positions in ARGV order): each session is
 * returned by one call of this script or SESSION_REMOVE, never two.
 */
export const SESSION_REAP = defineLua('session-reap', -1, `${NOW}
local out = {}
local n = 0
for i = 1, #ARGV, 3 do
  n = n + 1
  local exp = redis.call('ZSCORE', KEYS[1], ARGV[i + 2])
  if exp and tonumber(exp) <= now then
    redis.call('ZREM', KEYS[1], ARGV[i + 2])
    local hash = KEYS[tonumber(ARGV[i])]
    local v = redis.call('HGET', hash, ARGV[i + 1])
    if v then
      redis.call('HDEL', hash, ARGV[i + 1])
      out[#out + 1] = n
      out[#out + 1] = v
    end
  end
end
return out`)

/** The scripts of the session store, for SCRIPT LOAD or inspection. */
export const SESSION_STORE_SCRIPTS: readonly LuaScript[] = [
  SESSION_ADD, SESSION_REMOVE, SESSION_SET_PRESENCE, SESSION_LIST, SESSION_REFRESH, SESSION_SCAN, SESSION_FORGET_INSTANCE, SESSION_REAP
]

/** The scripts of the op log, for SCRIPT LOAD or inspection. */
export const OPERATION_LOG_SCRIPTS: readonly LuaScript[] = [APPEND, READ, HEAD, OPEN, FENCE, TOUCH]

function isNoScript (err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOSCRIPT')
}

/** Scripts known to be in each connection's Redis script cache. */
const cached = new WeakMap<RedisCommandClient, Set<string>>()

/**
 * Runs `script`: with EVAL until Redis is known to have it cached on this
 * client's server (a successful call), then with EVALSHA; a NOSCRIPT (the
 * cache was emptied: a restart, SCRIPT FLUSH) forgets it and the call is
 * sent again with EVAL. Resolves the raw reply; rejects with Redis' error.
 *
 * Ordering: calls are sent in call order on the client's connection and run
 * in that order. Starting with EVAL (not EVALSHA and a retry) keeps it so on
 * a fresh server, where concurrent first calls would otherwise all get
 * NOSCRIPT and be retried behind later calls. Only a cache emptied while
 * calls are in flight on a live connection (SCRIPT FLUSH) can still reorder
 * them; a Redis restart drops the connection first, and the failover's probe
 * loads the op log's scripts before the port returns to Redis.
 */
export async function runScript (client: RedisCommandClient, script: LuaScript, keys: readonly string[], args: readonly string[],
  onResend?: () => void): Promise<unknown> {
  if (script.numberOfKeys !== -1 && keys.length !== script.numberOfKeys) {
    throw new TypeError(`script ${script.name} takes ${script.numberOfKeys} keys, got ${keys.length}`)
  }
  const tail = [String(keys.length), ...keys, ...args]
  let known = cached.get(client)
  if (known === undefined) {
    known = new Set()
    cached.set(client, known)
  }
  if (known.has(script.sha1)) {
    try {
      return await client.sendCommand(['EVALSHA', script.sha1, ...tail])
    } catch (err) {
      if (!isNoScript(err)) throw err
      known.delete(script.sha1)
    }
    // Sent again, after whatever the caller sent meanwhile.
    onResend?.()
  }
  const reply = await client.sendCommand(['EVAL', script.source, ...tail])
  known.add(script.sha1)
  return reply
}
