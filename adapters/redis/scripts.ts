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
  /** how many of the arguments are KEYS */
  readonly numberOfKeys: number
}

function defineLua (name: string, numberOfKeys: number, source: string): LuaScript {
  return { name, source, sha1: createHash('sha1').update(source).digest('hex'), numberOfKeys }
}

/**
 * Shared by the op log scripts. KEYS[1] meta hash, KEYS[2] ops stream,
 * KEYS[3] ids sorted set.
 *
 * position(candidate) returns the project's epoch and head. When the meta hash
 * has no epoch (a project never touched, or its keys were lost), `candidate`
 * becomes the epoch, and the head continues above anything the other keys
 * still hold (the stream's last generated id, the highest remembered op id),
 * so a seq is never given to two different ops while a trace of the first one
 * remains, and XADD never meets an id below the stream's top.
 */
const POSITION = `
local function int(n) return string.format('%d', n) end

local function position(candidate)
  local stored = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
  if stored[1] then return stored[1], tonumber(stored[2]) or 0 end
  local seq = tonumber(stored[2]) or 0
  if redis.call('EXISTS', KEYS[2]) == 1 then
    local info = redis.call('XINFO', 'STREAM', KEYS[2])
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then
        local last = tonumber(string.match(info[i + 1], '^(%d+)')) or 0
        if last > seq then seq = last end
      end
    end
  end
  local newest = redis.call('ZREVRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if newest[2] and tonumber(newest[2]) > seq then seq = tonumber(newest[2]) end
  redis.call('HSET', KEYS[1], 'epoch', candidate, 'seq', int(seq))
  return candidate, seq
end
`

/**
 * APPEND. KEYS: meta, ops, ids.
 * ARGV: [1] candidate epoch, [2] op id, [3] the op as JSON without `project`
 * and `seq`, [4] history limit (stream MAXLEN ~), [5] id retention (>= history
 * limit), [6] channel to PUBLISH the sequenced op on, '' for none, [7] [8] [9]
 * the message around the two values only the script knows and the op's JSON
 * (sent once, not twice): `[7] .. epoch .. [8] .. seq .. [9] .. [3] without
 * its opening brace .. '}}'` (codec.ts, opEnvelopeParts).
 *
 * Returns {1, epoch, seq} when appended, {0, epoch, original seq} when the op
 * id was already accepted (nothing written then, except a new epoch, and
 * nothing published). Nothing is written before XADD succeeds, so a failing
 * XADD leaves the head where it was. The PUBLISH happens in the script, so
 * the messages of a project go out in seq order.
 */
export const APPEND = defineLua('append', 3, POSITION + `
local epoch, head = position(ARGV[1])
local seen = redis.call('ZSCORE', KEYS[3], ARGV[2])
if seen then return {0, epoch, tonumber(seen)} end
local seq = head + 1
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], int(seq) .. '-0', 'op', ARGV[3])
redis.call('HSET', KEYS[1], 'seq', int(seq))
redis.call('ZADD', KEYS[3], int(seq), ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', int(seq - tonumber(ARGV[5])))
if ARGV[6] ~= '' then
  redis.call('PUBLISH', ARGV[6], ARGV[7] .. epoch .. ARGV[8] .. int(seq) .. ARGV[9] .. string.sub(ARGV[3], 2) .. '}}')
end
return {1, epoch, seq}
`)

/**
 * READ. KEYS: meta, ops, ids.
 * ARGV: [1] candidate epoch, [2] since, [3] limit, [4] '1' when the caller
 * gave an epoch, [5] that epoch.
 *
 * Returns {epoch, head, reset (0 or 1), id, json, id, json, ...}: the entries
 * with since < seq, oldest first, at most limit. Reset (and no entry) when the
 * caller's epoch is not the current one, since > head, or the entry since + 1
 * is no longer kept.
 */
export const READ = defineLua('read', 3, POSITION + `
local epoch, head = position(ARGV[1])
local since = tonumber(ARGV[2])
if (ARGV[4] == '1' and ARGV[5] ~= epoch) or since > head then return {epoch, head, 1} end
if since == head then return {epoch, head, 0} end
local first = int(since + 1) .. '-0'
local entries = redis.call('XRANGE', KEYS[2], first, '+', 'COUNT', ARGV[3])
if #entries == 0 or entries[1][1] ~= first then return {epoch, head, 1} end
local out = {epoch, head, 0}
for _, entry in ipairs(entries) do
  out[#out + 1] = entry[1]
  out[#out + 1] = entry[2][2]
end
return out
`)

/** HEAD. KEYS: meta, ops, ids. ARGV: [1] candidate epoch. Returns {epoch, head}. */
export const HEAD = defineLua('head', 3, POSITION + `
local epoch, head = position(ARGV[1])
return {epoch, head}
`)


// ---------------------------------------------------------------- sessions

// Values in a project's session hash: `<instance id>\n<member JSON>`, so
// scripts can find the owning instance without re-encoding the member.

const NOW = `local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`

/** KEYS: sessions hash, expiry zset, instance's session set, instances set. ARGV: sessionId, value, ttlMs, ref, instanceId */
export const SESSION_ADD = defineLua('session-add', 4, `${NOW}
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[4])
redis.call('SADD', KEYS[3], ARGV[4])
redis.call('SADD', KEYS[4], ARGV[5])
return 1`)

/**
 * KEYS: sessions hash, expiry zset, instance's session set. ARGV: sessionId, ref.
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

export const SESSION_SET_PRESENCE = defineLua('session-set-presence', 2, `${NOW}
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v ~= ARGV[2] then return v and -1 or 0 end
local exp = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[4]) or '0')
if exp <= now then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1`)

/** KEYS: sessions hash, expiry zset. ARGV: refPrefix. Returns live values. */
export const SESSION_LIST = defineLua('session-list', 2, `${NOW}
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local exp = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1] .. all[i]) or '0')
  if exp > now then out[#out + 1] = all[i + 1] end
end
return out`)

/** KEYS: expiry zset. ARGV: ttlMs, refs... Extends live sessions only. */
export const SESSION_REFRESH = defineLua('session-refresh', 1, `${NOW}
for i = 2, #ARGV do
  local exp = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if exp and tonumber(exp) > now then redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
end
return 1`)

/**
 * KEYS: expiry zset, instances set. ARGV: key prefix, batch size.
 * Instances whose lease is gone have their sessions expired at once; then
 * every expired session is removed and returned as project, value pairs.
 * One script: each session is returned to exactly one caller.
 */
export const SESSION_REAP = defineLua('session-reap', 2, `${NOW}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', ARGV[1] .. ':instance:' .. id .. ':lease') == 0 then
    local set = ARGV[1] .. ':instance:' .. id .. ':sessions'
    for _, ref in ipairs(redis.call('SMEMBERS', set)) do
      if redis.call('ZSCORE', KEYS[1], ref) then redis.call('ZADD', KEYS[1], 0, ref) end
    end
    redis.call('DEL', set)
    redis.call('SREM', KEYS[2], id)
  end
end
local out = {}
for _, ref in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))) do
  redis.call('ZREM', KEYS[1], ref)
  local nl = string.find(ref, '\\n', 1, true)
  local project = string.sub(ref, 1, nl - 1)
  local sid = string.sub(ref, nl + 1)
  local hash = ARGV[1] .. ':sessions:{' .. project .. '}'
  local v = redis.call('HGET', hash, sid)
  if v then
    redis.call('HDEL', hash, sid)
    local vl = string.find(v, '\\n', 1, true)
    redis.call('SREM', ARGV[1] .. ':instance:' .. string.sub(v, 1, vl - 1) .. ':sessions', ref)
    out[#out + 1] = project
    out[#out + 1] = v
  end
end
return out`)

/** KEYS: lease key, instances set. ARGV: instance id, lease ms. */
export const SESSION_LEASE = defineLua('session-lease', 2, `redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return 1`)



/** The scripts of the op log, for SCRIPT LOAD or inspection. */
export const OPERATION_LOG_SCRIPTS: readonly LuaScript[] = [APPEND, READ, HEAD]

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
export async function runScript (client: RedisCommandClient, script: LuaScript, keys: readonly string[], args: readonly string[]): Promise<unknown> {
  if (keys.length !== script.numberOfKeys) {
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
  }
  const reply = await client.sendCommand(['EVAL', script.source, ...tail])
  known.add(script.sha1)
  return reply
}
