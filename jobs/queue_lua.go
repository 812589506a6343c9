package jobs

import (
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/jobhook/jobhook/models"
)

// The queue's scripts. Each is one atomic call; every script's ARGV[1] is
// the key prefix, and the keys it touches are built from it (the queue
// lives on one Redis, never a cluster). The shapes of the keys are
// described on redisQueue.
//
// luaLib is the part every script shares:
//
//   - meta(id): the job's user, flow keys and type (from the meta hash:
//     the keys space-separated, the type and the user, a line each).
//   - attach(id, score, user): makes a job runnable: in pending, in its
//     user's queue, and its user in the ring no later than its score.
//   - free(id, keys): gives back the key slots a claimed job held, each
//     letting one job parked on that key run again.
//   - detach(id): takes a job out of whatever set holds it.
//
// A key's pause in the pauses hash is "untilMs reason"; until -1 is an
// operator's hold, which parks the key's jobs until it is resumed.
var luaLib = `
local P = ARGV[1]
local SPAN = ` + strconv.Itoa(seqSpan) + `
local MAXP = ` + strconv.Itoa(models.MaxPriority) + `
local PENDING, PROCESSING, DELAYED, DPRIO = P .. 'pending', P .. 'processing', P .. 'delayed', P .. 'delayed:priority'
local RING, META, WAITING, SEQ = P .. 'ring', P .. 'meta', P .. 'waiting', P .. 'seq'
local function fmt(n) return string.format('%.0f', n) end
local function uq(user) return P .. 'u:' .. user end
local function split(m)
  local keys = {}
  if not m then return '', keys, '' end
  local nl = string.find(m, '\n', 1, true)
  if not nl then return m, keys, '' end
  for k in string.gmatch(string.sub(m, 1, nl - 1), '%S+') do keys[#keys + 1] = k end
  local rest = string.sub(m, nl + 1)
  local nl2 = string.find(rest, '\n', 1, true)
  if not nl2 then return rest, keys, '' end
  return string.sub(rest, nl2 + 1), keys, string.sub(rest, 1, nl2 - 1)
end
local function meta(id) return split(redis.call('HGET', META, id)) end
local function enter(user, score)
  redis.call('ZADD', RING, 'LT', score, user)
end
local function attach(id, score, user)
  redis.call('ZADD', uq(user), score, id)
  enter(user, score)
end
local function unpark(key, n)
  for _ = 1, n do
    local h = redis.call('ZPOPMIN', P .. 'parked:' .. key)
    if #h == 0 then return end
    local user = meta(h[1])
    attach(h[1], h[2], user)
    redis.call('HDEL', WAITING, h[1])
  end
end
local function free(id, keys)
  if #keys > 0 then redis.call('HDEL', WAITING, id) end
  for _, k in ipairs(keys) do
    if redis.call('ZREM', P .. 'run:' .. k, id) == 1 then unpark(k, 1) end
  end
end
local function detach(id)
  local user, keys = meta(id)
  if redis.call('ZREM', PENDING, id) == 1 then
    if redis.call('ZREM', uq(user), id) == 0 then
      for _, k in ipairs(keys) do redis.call('ZREM', P .. 'parked:' .. k, id) end
    end
  end
  if redis.call('ZREM', PROCESSING, id) == 1 then free(id, keys) end
  redis.call('ZREM', DELAYED, id)
  redis.call('HDEL', DPRIO, id)
  redis.call('HDEL', WAITING, id)
  return user, keys
end
local function setmeta(id, m)
  if m ~= '' then redis.call('HSET', META, id, m) end
end
`

// limitsLib reads the flow limits a script is given, from ARGV[first] on,
// four values each (key prefix, concurrency, rate, interval ms), and
// returns limitOf(key): the limit of the longest matching prefix, or nil.
var limitsLib = `
local function limitsFrom(first)
  local limits, cache = {}, {}
  for i = first, #ARGV, 4 do
    limits[#limits + 1] = {ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])}
  end
  return function(key)
    local c = cache[key]
    if c ~= nil then return c or nil end
    local best, bestLen = false, -1
    for _, l in ipairs(limits) do
      if #l[1] > bestLen and string.sub(key, 1, #l[1]) == l[1] then best, bestLen = l, #l[1] end
    end
    cache[key] = best
    return best or nil
  end
end
`

// script builds a queue script from its body, after luaLib.
func script(body string) *redis.Script { return redis.NewScript(luaLib + body) }

// enqueueScript makes jobs runnable now, each behind every job of its
// priority (NX: a job already pending keeps its place). ARGV: prefix,
// then id, inverted priority, meta (empty keeps the stored one) for each.
// A batch costs a few commands whatever its size: one read of which jobs
// are pending already, then one write per set (and per user).
var enqueueScript = script(`
local n = (#ARGV - 1) / 3
local last = redis.call('INCRBY', SEQ, n)
local ids, metas = {}, {}
for i = 1, n do
  ids[i] = ARGV[3*i - 1]
  local m = ARGV[3*i + 1]
  if m ~= '' then
    metas[#metas + 1] = ids[i]
    metas[#metas + 1] = m
  end
end
if #metas > 0 then redis.call('HSET', META, unpack(metas)) end
local present = redis.call('ZMSCORE', PENDING, unpack(ids))
local added, byUser, first, order = {}, {}, {}, {}
for i = 1, n do
  if not present[i] then
    local id = ids[i]
    local score = fmt(tonumber(ARGV[3*i]) * SPAN + (last - n + i) % SPAN)
    present[i] = score
    added[#added + 1] = score
    added[#added + 1] = id
    local m = ARGV[3*i + 1]
    local user
    if m ~= '' then user = split(m) else user = meta(id) end
    if not byUser[user] then
      byUser[user] = {}
      order[#order + 1] = user
    end
    local q = byUser[user]
    q[#q + 1] = score
    q[#q + 1] = id
    if not first[user] or tonumber(score) < tonumber(first[user]) then first[user] = score end
  end
end
if #added > 0 then
  redis.call('ZADD', PENDING, unpack(added))
  for _, user in ipairs(order) do
    redis.call('ZADD', uq(user), unpack(byUser[user]))
    enter(user, first[user])
  end
end
return #added / 2
`)

// requeueScript moves claimed jobs from processing to the back of their
// priority in pending, as enqueueScript places a new job, giving back
// their key slots. ARGV as enqueueScript's.
var requeueScript = script(`
local n = (#ARGV - 1) / 3
local last = redis.call('INCRBY', SEQ, n)
for i = 1, n do
  local id, m = ARGV[3*i - 1], ARGV[3*i + 1]
  setmeta(id, m)
  local user, keys = meta(id)
  if redis.call('ZREM', PROCESSING, id) == 1 then free(id, keys) end
  local score = fmt(tonumber(ARGV[3*i]) * SPAN + (last - n + i) % SPAN)
  if redis.call('ZADD', PENDING, 'NX', score, id) == 1 then
    attach(id, score, user)
  end
end
return n
`)

// releaseScript moves claimed jobs from processing to the front of their
// priority in pending (sequence 0: they were claimed before anything
// still waiting), giving back their key slots. ARGV as enqueueScript's.
var releaseScript = script(`
local n = (#ARGV - 1) / 3
for i = 1, n do
  local id, m = ARGV[3*i - 1], ARGV[3*i + 1]
  setmeta(id, m)
  local user, keys = meta(id)
  if redis.call('ZREM', PROCESSING, id) == 1 then free(id, keys) end
  local score = fmt(tonumber(ARGV[3*i]) * SPAN)
  redis.call('ZADD', PENDING, score, id)
  attach(id, score, user)
end
return n
`)

// delayScript moves jobs to delayed, out of wherever they were. ARGV:
// prefix, runAtMs, then id, priority, meta for each.
var delayScript = script(`
for i = 3, #ARGV, 3 do
  local id = ARGV[i]
  setmeta(id, ARGV[i + 2])
  detach(id)
  redis.call('ZADD', DELAYED, ARGV[2], id)
  redis.call('HSET', DPRIO, id, ARGV[i + 1])
end
return 1
`)

// promoteScript moves due jobs from delayed to pending, each behind every
// job of its priority. ARGV: prefix, nowMs, limit.
var promoteScript = script(`
local ids = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local n = #ids
if n == 0 then return 0 end
local last = redis.call('INCRBY', SEQ, n)
for i = 1, n do
  local id = ids[i]
  local p = tonumber(redis.call('HGET', DPRIO, id) or '0') or 0
  local score = fmt((MAXP - p) * SPAN + (last - n + i) % SPAN)
  redis.call('ZREM', DELAYED, id)
  redis.call('HDEL', DPRIO, id)
  if redis.call('ZADD', PENDING, 'NX', score, id) == 1 then
    attach(id, score, (meta(id)))
  end
end
return n
`)

// claimScript takes up to n jobs, the first by priority and, within one
// priority, one user's job at a time in turn, into processing with a lease
// deadline, honouring each job's flow keys:
//
//   - a key paused (a provider asked to wait) or at its rate limit sets
//     the job aside in delayed until the key may run, and the earliest
//     such time is returned, for a wake-up;
//   - a key at its concurrency limit parks the job on the key (it stays
//     pending) until a job holding one of the key's slots gives it back.
//
// A job set aside costs no attempt and no handler slot; the reason is
// kept in the waiting hash for the API.
//
// The ring orders users by the priority of their first job and their
// turn. Each pass reads the head of the ring and gives the users there
// that share its priority a turn each, in ring order: a turn takes the
// user's first job, or, for a user alone in its priority, as many of its
// jobs as the claim wants that rank before the next user's (one ZPOPMIN).
// The user then goes behind the others of the priority of the last job
// looked at. A user placed too early (its first job has a lower priority
// than its place says, as when its turn took the last job of a priority)
// is placed again when its turn comes, before anything is claimed, so
// priority is exact. The claimed jobs move from pending to processing in
// two commands at the end.
// At most maxScan jobs are looked at.
//
// ARGV: prefix, n, deadlineMs, nowMs, maxScan, then the limits, four
// values each: key prefix, concurrency, rate, interval ms (0: none).
// Returns the ids claimed, then 1 if jobs were left unlooked-at because
// maxScan was reached (else 0), then the earliest time (ms) a job set
// aside may run (0 if none).
var claimScript = script(limitsLib + `
local n, deadline, now, maxScan = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local limitOf = limitsFrom(6)
local seq = tonumber(redis.call('GET', SEQ) or '0') or 0
local turned = false
local function turn()
  seq = seq + 1
  turned = true
  return seq % SPAN
end
local claimed, wakeAt, scanned, seen = {}, 0, 0, {}
local heldTypes = {}
local th = redis.call('HGETALL', P .. 'typeholds')
for i = 1, #th, 2 do heldTypes[th[i]] = th[i + 1] end
-- look decides the fate of one job taken from its user's queue.
local function look(id, score)
  local _, keys, typ = meta(id)
  local verdict, vkey, untilMs, reason = 'run', nil, 0, nil
  if heldTypes[typ] then
    verdict, vkey, reason = 'park', 'type:' .. typ, 'job type paused by an operator: ' .. heldTypes[typ]
    keys = {}
  end
  for _, k in ipairs(keys) do
    if not seen[k] then
      seen[k] = true
      redis.call('ZADD', P .. 'flowkeys', now, k)
    end
    local p = redis.call('HGET', P .. 'pauses', k)
    if p then
      local sp = string.find(p, ' ', 1, true) or (#p + 1)
      local u = tonumber(string.sub(p, 1, sp - 1)) or 0
      if u < 0 then
        verdict, vkey, reason = 'park', k, 'paused by an operator: ' .. string.sub(p, sp + 1)
        break
      end
      if u > now then
        verdict, vkey, untilMs, reason = 'later', k, u, string.sub(p, sp + 1)
        break
      end
      redis.call('HDEL', P .. 'pauses', k)
    end
    local l = limitOf(k)
    if l and l[2] > 0 and redis.call('ZCOUNT', P .. 'run:' .. k, '(' .. now, '+inf') >= l[2] then
      verdict, vkey, reason = 'park', k, 'concurrency limit ' .. l[2] .. ' reached'
      break
    end
    if l and l[3] > 0 then
      local rk = P .. 'rate:' .. k
      redis.call('ZREMRANGEBYSCORE', rk, '-inf', now - l[4])
      if redis.call('ZCARD', rk) >= l[3] then
        local oldest = redis.call('ZRANGE', rk, 0, 0, 'WITHSCORES')
        verdict, vkey, untilMs = 'later', k, tonumber(oldest[2]) + l[4]
        reason = 'rate limit ' .. l[3] .. ' per ' .. l[4] .. ' ms reached'
        break
      end
    end
  end
  if verdict == 'run' then
    for _, k in ipairs(keys) do
      local l = limitOf(k)
      if l and l[2] > 0 then redis.call('ZADD', P .. 'run:' .. k, deadline, id) end
      if l and l[3] > 0 then redis.call('ZADD', P .. 'rate:' .. k, now, id .. ':' .. now) end
    end
    claimed[#claimed + 1] = id
  elseif verdict == 'park' then
    redis.call('ZADD', P .. 'parked:' .. vkey, score, id)
    redis.call('HSET', WAITING, id, vkey .. '\n0\n' .. reason)
  else
    redis.call('ZREM', PENDING, id)
    redis.call('ZADD', DELAYED, fmt(untilMs), id)
    redis.call('HSET', DPRIO, id, MAXP - math.floor(tonumber(score) / SPAN))
    redis.call('HSET', WAITING, id, vkey .. '\n' .. fmt(untilMs) .. '\n' .. reason)
    if wakeAt == 0 or untilMs < wakeAt then wakeAt = untilMs end
  end
end
-- Each pass gives a turn to the users at the head of the ring that share
-- its priority, one job each, in ring order; a user alone in its priority
-- takes as many jobs as rank before the next user's first.
-- Each pass looks at a job, drops a user whose queue is empty or places
-- again one placed too early; the bound on passes is a guard against a
-- script that never ends (it would hold Redis).
local passes = 0
while #claimed < n and scanned < maxScan and passes < 4 * maxScan + 16 do
  passes = passes + 1
  local want = math.min(n - #claimed, maxScan - scanned)
  local top = redis.call('ZRANGE', RING, 0, want, 'WITHSCORES')
  if #top == 0 then break end
  local band = math.floor(tonumber(top[2]) / SPAN)
  local users, nextBand = {}, nil
  for i = 1, #top, 2 do
    local b = math.floor(tonumber(top[i + 1]) / SPAN)
    if b == band and #users < want then
      users[#users + 1] = top[i]
    else
      nextBand = b
      break
    end
  end
  local alone = #users == 1 and (nextBand == nil or nextBand > band)
  -- A user alone takes only jobs that rank before the next user's first.
  local below = alone and nextBand or nil
  local readd = {}
  for _, user in ipairs(users) do
    if #claimed >= n then break end
    local q = uq(user)
    local popped = redis.call('ZPOPMIN', q, alone and want or 1)
    if #popped == 0 then
      redis.call('ZREM', RING, user)
    elseif math.floor(tonumber(popped[2]) / SPAN) > band then
      -- Placed too early: back to its place by its first job's priority.
      for i = 1, #popped, 2 do redis.call('ZADD', q, popped[i + 1], popped[i]) end
      readd[#readd + 1] = fmt(math.floor(tonumber(popped[2]) / SPAN) * SPAN + turn())
      readd[#readd + 1] = user
    else
      local last = band
      for i = 1, #popped, 2 do
        local id, score = popped[i], popped[i + 1]
        local b = math.floor(tonumber(score) / SPAN)
        if (below and b >= below) or #claimed >= n then
          redis.call('ZADD', q, score, id)
        else
          scanned = scanned + 1
          look(id, score)
          last = b
        end
      end
      readd[#readd + 1] = fmt(last * SPAN + turn())
      readd[#readd + 1] = user
    end
  end
  if #readd > 0 then redis.call('ZADD', RING, unpack(readd)) end
end
if #claimed > 0 then
  local moved = {}
  for i, id in ipairs(claimed) do
    moved[2 * i - 1] = deadline
    moved[2 * i] = id
  end
  redis.call('ZREM', PENDING, unpack(claimed))
  redis.call('ZADD', PROCESSING, unpack(moved))
end
if turned then redis.call('SET', SEQ, fmt(seq)) end
local more = 0
if scanned >= maxScan and redis.call('EXISTS', RING) == 1 then more = 1 end
claimed[#claimed + 1] = tostring(more)
claimed[#claimed + 1] = fmt(wakeAt)
return claimed
`)

// ackScript drops finished jobs from the queue: out of processing (giving
// back their key slots) and their meta. ARGV: prefix, id, ...
var ackScript = script(`
for i = 2, #ARGV do
  local id = ARGV[i]
  local _, keys = meta(id)
  if redis.call('ZREM', PROCESSING, id) == 1 then free(id, keys) end
  redis.call('HDEL', META, id)
  redis.call('HDEL', WAITING, id)
end
return 1
`)

// removeScript drops jobs from every set, as when they are cancelled.
// ARGV: prefix, id, ...
var removeScript = script(`
for i = 2, #ARGV do
  detach(ARGV[i])
  redis.call('HDEL', META, ARGV[i])
end
return 1
`)

// renewScript moves the lease deadline of processing jobs, and of the key
// slots they hold, to deadline (XX: an id no longer there is not added
// back). ARGV: prefix, deadlineMs, id, ...
var renewScript = script(renewBody)

const renewBody = `
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('ZADD', PROCESSING, 'XX', 'CH', ARGV[2], id) == 1 then
    local _, keys = meta(id)
    for _, k in ipairs(keys) do redis.call('ZADD', P .. 'run:' .. k, 'XX', ARGV[2], id) end
  end
end
return 1
`

// ackExpiredScript drops from processing the ids whose lease deadline has
// passed, giving back their key slots. ARGV: prefix, now ms, id, ...
// Returns the ids dropped.
var ackExpiredScript = script(`
local dropped = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local deadline = redis.call('ZSCORE', PROCESSING, id)
  if deadline and tonumber(deadline) <= tonumber(ARGV[2]) then
    redis.call('ZREM', PROCESSING, id)
    local _, keys = meta(id)
    free(id, keys)
    dropped[#dropped + 1] = id
  end
end
return dropped
`)

// pauseScript pauses a flow key until a time, unless it is paused until
// later already or held by an operator, and notes the reason on the job
// that reported it.
// ARGV: prefix, key, untilMs, reason, job id (empty for none), nowMs.
var pauseScript = script(`
local cur = redis.call('HGET', P .. 'pauses', ARGV[2])
local curUntil = cur and tonumber(string.sub(cur, 1, (string.find(cur, ' ', 1, true) or (#cur + 1)) - 1)) or 0
-- An operator's hold (until -1) is ended only by a resume.
if (curUntil or 0) >= 0 and tonumber(ARGV[3]) > (curUntil or 0) then
  redis.call('HSET', P .. 'pauses', ARGV[2], ARGV[3] .. ' ' .. ARGV[4])
end
redis.call('ZADD', P .. 'flowkeys', ARGV[6], ARGV[2])
if ARGV[5] ~= '' then
  redis.call('HSET', WAITING, ARGV[5], ARGV[2] .. '\n' .. ARGV[3] .. '\n' .. ARGV[4])
end
return 1
`)

// unstickScript lets parked jobs run whose key has free slots: a guard
// for a slot given back without waking the job parked behind it. It looks
// at the keys claims met most recently, and trims their recency set to
// the 10,000 newest. ARGV: prefix, nowMs, then the
// limits as claimScript takes them. Returns how many jobs it woke.
var unstickScript = script(limitsLib + `
local now = tonumber(ARGV[2])
local limitOf = limitsFrom(3)
local woke = 0
-- The recency set keeps the 10,000 keys seen last.
redis.call('ZREMRANGEBYRANK', P .. 'flowkeys', 0, -10001)
for _, k in ipairs(redis.call('ZREVRANGE', P .. 'flowkeys', 0, 9999)) do
  local parked = redis.call('ZCARD', P .. 'parked:' .. k)
  if parked > 0 then
    local l = limitOf(k)
    local free = parked
    if l and l[2] > 0 then
      free = l[2] - redis.call('ZCOUNT', P .. 'run:' .. k, '(' .. now, '+inf')
    end
    if free > 0 then
      free = math.min(free, parked)
      unpark(k, free)
      woke = woke + free
    end
  end
end
return woke
`)

// holdScript holds a flow key for an operator until it is resumed (a
// pause until -1): its jobs park on it at their next claim. ARGV: prefix,
// key, reason, nowMs.
var holdScript = script(`
redis.call('HSET', P .. 'pauses', ARGV[2], '-1 ' .. ARGV[3])
redis.call('ZADD', P .. 'flowkeys', ARGV[4], ARGV[2])
return 1
`)

// resumeScript ends an operator's hold (or a provider's pause) of a flow
// key and lets the jobs parked on it run again (those over the key's
// concurrency limit park again at their claim). ARGV: prefix, key.
// Returns how many jobs it let run.
var resumeScript = script(`
redis.call('HDEL', P .. 'pauses', ARGV[2])
local n = redis.call('ZCARD', P .. 'parked:' .. ARGV[2])
unpark(ARGV[2], n)
return n
`)

// holdTypeScript holds a job type for an operator until it is resumed:
// its jobs park on the pseudo-key type:<type> at their next claim. ARGV:
// prefix, type, reason.
var holdTypeScript = script(`
redis.call('HSET', P .. 'typeholds', ARGV[2], ARGV[3])
return 1
`)

// resumeTypeScript ends an operator's hold of a job type and lets its
// parked jobs run again. ARGV: prefix, type. Returns how many it let run.
var resumeTypeScript = script(`
redis.call('HDEL', P .. 'typeholds', ARGV[2])
local key = 'type:' .. ARGV[2]
local n = redis.call('ZCARD', P .. 'parked:' .. key)
unpark(key, n)
return n
`)
