"""The Lua scripts of the Redis store (store/redis/store.py), each usable from redis-py's sync
and asyncio clients, and the pipelined DELETE commands of a delete over many keys.

A script runs atomically on the server: no other client's command runs between its steps. Every
script's KEYS share one Cluster slot (store/redis/keys.py names a URL's keys, and a tag's, into
one), so each stays one atomic step on a Redis Cluster too; PUBLISH reaches every node.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

from redis.exceptions import NoScriptError

from caching_proxy.store.backend import SEP
from caching_proxy.store.redis.keys import CHANGES, GROUP, announcement, owner_of, redis_key

_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "
# KEYS: member, group; ARGV: value, ttl in ms, changes channel, announcement.
SET_MEMBER = _NOW_MS + """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], last[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
"""
# KEYS: key; ARGV: value, ttl in ms, changes channel, announcement.
SET = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
"""
# KEYS: key, its own group[, a lock]; ARGV: value, ttl in ms, changes channel, announcement[,
# the lock's token]. The group's members (all in the key's slot) go with the set zset.
REPLACE = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local members = redis.call('ZRANGE', KEYS[2], 0, -1)
for i = 1, #members do redis.call('DEL', members[i]) end
if #members > 0 then redis.call('DEL', KEYS[2]) end
if KEYS[3] and redis.call('GET', KEYS[3]) == ARGV[5] then redis.call('DEL', KEYS[3]) end
redis.call('PUBLISH', ARGV[3], ARGV[4])
"""
# KEYS: group.
MEMBERS = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
# KEYS: key; ARGV: value, ttl in ms, changes channel, announcement. A later expiry (or none)
# already there is kept.
SET_KEEP_LATER = """
local current = redis.call('PTTL', KEYS[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
if current == -1 then return redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL') end
return redis.call('SET', KEYS[1], ARGV[1], 'PX', math.max(current, tonumber(ARGV[2])))
"""
# KEYS: key[, its group]; ARGV: changes channel, its owner's announcement ('': none). The member
# leaves its group in the same step, so `members` never lists a deleted key. Sent as EVAL in
# pipelines (a pipeline cannot load a missing script midway).
DELETE = """
local removed = redis.call('DEL', KEYS[1])
if KEYS[2] then redis.call('ZREM', KEYS[2], KEYS[1]) end
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return removed
"""
GET_WITH_TTL = "return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}"
# KEYS: use count; ARGV: window in ms.
COUNT_USE = ("local n = redis.call('INCR', KEYS[1]) redis.call('PEXPIRE', KEYS[1], ARGV[1])"
             " return n")
DELETE_IF = ("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1])"
             " end return 0")
# KEYS: the counters' hash; ARGV: name, delta, name, delta, ... One command: a cluster
# pipeline would send a timed-out HINCRBY again on its own, counting it twice.
ADD_COUNTS = ("for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])"
              " end")
# The origin budget (Schedules), in seconds on the server's clock, as text (a Lua number
# returned to Redis would lose its fraction). KEYS: the schedule; ARGV: interval, tolerance,
# longest wait. The GCRA step of policy/origin_budget.py's `reserve`; '-1': refused.
_NOW_S = "local t = redis.call('TIME') local now = t[1] + t[2] / 1000000 "
RESERVE = _NOW_S + """
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = math.max(tat, now)
local wait = math.max(now, start - tonumber(ARGV[2])) - now
if wait > tonumber(ARGV[3]) then return '-1' end
local next_tat = start + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.6f', next_tat), 'PX',
           math.ceil((next_tat - now + 60) * 1000))
return string.format('%.6f', wait)
"""
# KEYS: the pause; ARGV: seconds. A later pause in place is kept.
HOLD_OFF = _NOW_S + """
local until_ = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now + tonumber(ARGV[1]))
redis.call('SET', KEYS[1], string.format('%.6f', until_), 'PX',
           math.ceil((until_ - now) * 1000) + 1)
return string.format('%.6f', until_ - now)
"""
HELD_OFF = _NOW_S + """
return string.format('%.6f', math.max(0, tonumber(redis.call('GET', KEYS[1]) or '0') - now))
"""
# KEYS: the slots (a sorted set of tokens by lease deadline); ARGV: token, limit, lease s.
TAKE_SLOT = _NOW_S + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(ARGV[3]) + 60) * 1000))
return 1
"""
GIVE_SLOT = "redis.call('ZREM', KEYS[1], ARGV[1])"
# No keys: runs on any node (a cluster forwards the message to every node).
PUBLISH = "return redis.call('PUBLISH', ARGV[1], ARGV[2])"


def delete_batches(keys: Iterable[str], size: int) -> Iterator[list[tuple[Any, ...]]]:
    """The DELETE scripts that remove `keys` (each with its removal from its group), `size` to
    a pipeline. Each owner is announced once per batch, by its last key's step (after all of
    its keys in it)."""
    names = list(keys)
    for start in range(0, len(names), size):
        batch = names[start:start + size]
        last = {owner_of(key): i for i, key in enumerate(batch)}
        commands: list[tuple[Any, ...]] = []
        for i, key in enumerate(batch):
            owner = owner_of(key)
            tagged = [redis_key(key)] + ([redis_key(owner, GROUP)] if SEP in key else [])
            commands.append(("EVAL", DELETE, len(tagged), *tagged, CHANGES,
                             announcement(owner) if last[owner] == i else ""))
        yield commands


class LuaScript:
    """One script for both clients: EVALSHA, and where the node answers NOSCRIPT, EVAL of the
    whole text on that same node (which caches it there for the next EVALSHA). redis-py's own
    Script would load it with SCRIPT LOAD on every primary instead: a node that has none
    (a replica just promoted: Redis 7 replicates no script cache) while another primary is
    unreachable (the one it replaced, still in the client's slot map) then failed every write
    until the map was read again. Bound to no client: each call names the current one (a
    cluster client may be made anew, and an asyncio client belongs to its event loop)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    def __call__(self, client: Any, keys: list[Any], args: list[Any] | None = None) -> Any:
        both = (*keys, *(args or ()))
        try:
            return client.evalsha(self.sha, len(keys), *both)
        except NoScriptError:
            return client.eval(self.text, len(keys), *both)

    async def call_async(self, client: Any, keys: list[Any], args: list[Any] | None = None,
                         ) -> Any:
        both = (*keys, *(args or ()))
        try:
            return await client.evalsha(self.sha, len(keys), *both)
        except NoScriptError:
            return await client.eval(self.text, len(keys), *both)
