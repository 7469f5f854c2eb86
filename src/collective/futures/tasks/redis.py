"""The Redis backend: one queue for many instances on many machines.

Runs on: any thread (redis-py's connection pool; every operation is one
Lua script, atomic on the server). See ITaskBackend (interfaces.py).

Layout, every key under ``prefix`` (default ``collective.futures:``):

* ``task:ID``: a hash, the task (its plain fields, ``request``: the JSON
  of method, path, headers, user and backoff, ``payload``: the body) and
  its state, lease (``lease_id``, ``lease_until``), ``token`` while
  prepared;
* per queue ``q:NAME:prepared``, ``:queued`` (score: eta), ``:running``
  (score: lease_until), ``:done`` and ``:dead`` (score: finished):
  sorted sets of task ids, one per state, so that leasing, counting and
  purging read only what they need;
* ``q:NAME:dedup``: a hash, dedup key -> the id of the task that holds it
  (prepared, queued or running); ``token:T``: the ids a transaction
  prepared; ``queues``: the queues' names; ``secret``;
* ``q:NAME:wake``: a list that ``confirm`` and ``retry`` push to, and an
  idle consumer blocks on (``wait_for_tasks``, BLPOP): a task queued by
  any instance starts at once, without a polling storm;
* ``consumers``: a hash, consumer name -> its last heartbeat (JSON), for
  the Control Panel's list of the instances that consume.

Durability is Redis's: ``prepare`` returns when Redis has the tasks in
memory; with ``appendonly yes`` and ``appendfsync everysec`` (the docs'
configuration) a Redis crash loses at most the last second, with
``always`` nothing. Redis Cluster is not supported (the scripts touch keys
they compute); Sentinel is.

URLs as redis-py reads them (``redis://``, ``rediss://``, ``unix://``,
with a password and a database), plus ``redis+sentinel://[:PASSWORD@]
HOST:PORT[,HOST:PORT...]/SERVICE[/DB]`` for a Sentinel-managed master;
``?prefix=...`` sets the key prefix. Every error of redis-py becomes
TaskQueueUnavailableError, naming the URL without its password.
"""

import json
import math
import re
import time
import urllib.parse
import uuid

from zope.interface import implementer

from ..exceptions import TaskQueueUnavailableError
from ..interfaces import ITaskBackend
from .sqlite import IN_DOUBT


DEFAULT_PREFIX = "collective.futures:"
#: At most this many wake-ups are pushed per call (each one wakes one idle
#: consumer), and the list is kept this short.
WAKE_LIMIT = 64
#: Seconds a consumer's heartbeat counts (the Control Panel's list).
CONSUMER_TTL = 120.0
#: Tasks recovered or purged per queue in one script: Redis runs one
#: script at a time, and a backlog must not stop it for long.
BATCH = 500
#: Seconds redis-py waits to connect and for an answer (a blocking read
#: included: ``wait_for_tasks`` blocks for less).
SOCKET_TIMEOUT = 10.0

_REQUEST_FIELDS = ("method", "path", "headers", "user", "backoff")
_FLOATS = ("eta", "created", "lease_until", "finished")
_INTS = ("attempts", "max_attempts")
_NULLABLE = ("dedup", "consumer", "last_error", "lease_until", "finished")


def is_redis_url(url):
    return urllib.parse.urlsplit(str(url)).scheme in (
        "redis", "rediss", "unix", "redis+sentinel")


def public_url(url):
    """``url`` without its passwords (for messages, logs and the Control
    Panel): the user information's, whatever characters it has (a ``/``
    or ``?`` unencoded), and ``password=`` / ``sentinel_password=`` of the
    query."""
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if sep and "@" in rest:
        userinfo, _, after = rest.rpartition("@")
        user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
        text = f"{scheme}://{user}:***@{after}"
    return re.sub(r"((?:^|[?&])(?:sentinel_)?password=)[^&#]*", r"\1***", text)


#: The query options of a redis+sentinel:// URL besides ``prefix``: TLS
#: for the Sentinels and the master alike, and the Sentinels' own password
#: (the URL's user and password are the master's).
SENTINEL_OPTIONS = ("ssl", "ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile",
                    "ssl_keyfile", "sentinel_password")


def parse_url(url):
    """(kind, target, prefix, options) of a backend URL, or ValueError.
    kind "url": ``target`` is the URL for ``redis.Redis.from_url``
    (without ``prefix``), options {}; kind "sentinel": ``target`` is
    (sentinels [(host, port)], service, db), options the connection's
    (username, password, sentinel_password, ssl...)."""
    parts = urllib.parse.urlsplit(str(url).strip())
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    prefix = DEFAULT_PREFIX
    rest = []
    for name, value in query:
        if name == "prefix":
            if not value or any(ch.isspace() for ch in value):
                raise ValueError("prefix: a non-empty key prefix without spaces")
            prefix = value
        else:
            rest.append((name, value))
    base = str(url).strip().partition("?")[0]
    cleaned = base + ("?" + urllib.parse.urlencode(rest) if rest else "")
    if parts.scheme in ("redis", "rediss", "unix"):
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError(f"{public_url(url)!r}: no host")
        if parts.scheme == "unix" and not parts.path:
            raise ValueError(f"{public_url(url)!r}: no socket path")
        return "url", cleaned, prefix, {}
    if parts.scheme == "redis+sentinel":
        hosts = parts.netloc.rsplit("@", 1)[-1]
        sentinels = []
        for item in hosts.split(","):
            host, _, port = item.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{public_url(url)!r}: {item!r} is not HOST:PORT")
            sentinels.append((host, int(port)))
        path = [p for p in parts.path.split("/") if p]
        if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
            raise ValueError(f"{public_url(url)!r}: the path is /SERVICE or /SERVICE/DB")
        options = {}
        if parts.username:
            options["username"] = urllib.parse.unquote(parts.username)
        if parts.password:
            options["password"] = urllib.parse.unquote(parts.password)
        for name, value in rest:
            if name not in SENTINEL_OPTIONS:
                raise ValueError(f"{public_url(url)!r}: {name!r} is not an option of "
                                 f"redis+sentinel:// ({', '.join(SENTINEL_OPTIONS)}, "
                                 f"prefix)")
            options[name] = value
        if "ssl" in options:
            if options["ssl"].lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"{public_url(url)!r}: ssl is true or false")
            options["ssl"] = options["ssl"].lower() in ("true", "1")
        db = int(path[1]) if len(path) == 2 else 0
        return "sentinel", (sentinels, path[0], db), prefix, options
    raise ValueError(f"{public_url(url)!r} is not a redis://, rediss://, unix:// "
                     f"or redis+sentinel:// URL")


# The scripts. Each one runs atomically on the server. KEYS are not
# declared (they are computed from the prefix): standalone and Sentinel,
# not Cluster.

_PRELUDE = r"""
local P = ARGV[1]
local function q(queue, what) return P .. 'q:' .. queue .. ':' .. what end
local function tkey(id) return P .. 'task:' .. id end
local function undedup(queue, dedup, id)
  if dedup ~= '' and redis.call('HGET', q(queue, 'dedup'), dedup) == id then
    redis.call('HDEL', q(queue, 'dedup'), dedup)
  end
end
local function wake(queue, count)
  if count > 0 then
    local n = math.min(count, tonumber(ARGV[2]))
    local items = {}
    for i = 1, n do items[i] = '1' end
    redis.call('LPUSH', q(queue, 'wake'), unpack(items))
    redis.call('LTRIM', q(queue, 'wake'), 0, tonumber(ARGV[2]) - 1)
  end
end
local function held(id, lease_id)
  local fields = redis.call('HMGET', tkey(id), 'state', 'lease_id', 'queue', 'dedup')
  if fields[1] == 'running' and fields[2] == lease_id then return fields end
  return nil
end
"""

_SCRIPTS = {
    # ARGV: P, wake, token, now, n, then 8 per task: id queue dedup eta
    # created attempts max_attempts request, then the n payloads.
    "prepare": r"""
local token, now, n = ARGV[3], ARGV[4], tonumber(ARGV[5])
local out, taken = {}, {}
for k = 1, n do
  local b = 5 + (k - 1) * 8
  local id, queue, dedup = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local existing = nil
  if redis.call('EXISTS', tkey(id)) == 1 then
    existing = id
  elseif dedup ~= '' then
    existing = taken[queue .. '\0' .. dedup] or redis.call('HGET', q(queue, 'dedup'), dedup)
  end
  if existing then
    out[k] = existing
  else
    redis.call('HSET', tkey(id), 'queue', queue, 'state', 'prepared',
      'eta', ARGV[b + 4], 'created', ARGV[b + 5], 'attempts', ARGV[b + 6],
      'max_attempts', ARGV[b + 7], 'dedup', dedup, 'request', ARGV[b + 8],
      'payload', ARGV[5 + n * 8 + k], 'token', token, 'prepared_at', now,
      'lease_id', '', 'lease_until', '', 'consumer', '', 'last_error', '',
      'finished', '')
    redis.call('ZADD', q(queue, 'prepared'), now, id)
    redis.call('SADD', P .. 'token:' .. token, id)
    redis.call('SADD', P .. 'queues', queue)
    if dedup ~= '' then
      redis.call('HSET', q(queue, 'dedup'), dedup, id)
      taken[queue .. '\0' .. dedup] = id
    end
    out[k] = id
  end
end
return out
""",
    "confirm": r"""
local token = ARGV[3]
local count, woken = 0, {}
for _, id in ipairs(redis.call('SMEMBERS', P .. 'token:' .. token)) do
  local f = redis.call('HMGET', tkey(id), 'state', 'token', 'queue', 'eta')
  if f[1] == 'prepared' and f[2] == token then
    redis.call('HSET', tkey(id), 'state', 'queued', 'token', '')
    redis.call('ZREM', q(f[3], 'prepared'), id)
    redis.call('ZADD', q(f[3], 'queued'), f[4], id)
    woken[f[3]] = (woken[f[3]] or 0) + 1
    count = count + 1
  end
end
redis.call('DEL', P .. 'token:' .. token)
for queue, n in pairs(woken) do wake(queue, n) end
return count
""",
    "discard": r"""
local token = ARGV[3]
local count = 0
for _, id in ipairs(redis.call('SMEMBERS', P .. 'token:' .. token)) do
  local f = redis.call('HMGET', tkey(id), 'state', 'token', 'queue', 'dedup')
  if f[1] == 'prepared' and f[2] == token then
    redis.call('DEL', tkey(id))
    redis.call('ZREM', q(f[3], 'prepared'), id)
    undedup(f[3], f[4], id)
    count = count + 1
  end
end
redis.call('DEL', P .. 'token:' .. token)
return count
""",
    # ARGV: P, wake, queue, consumer, limit, lease_seconds, now, lease ids...
    "lease": r"""
local queue, consumer = ARGV[3], ARGV[4]
local limit, seconds, now = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
if limit < 1 then return {} end
local candidates = {}
for _, state in ipairs({'queued', 'running'}) do
  local found = redis.call('ZRANGEBYSCORE', q(queue, state), '-inf', ARGV[7],
                           'WITHSCORES', 'LIMIT', 0, limit)
  if #found == 2 * limit then
    -- Those tied with the last one too: the order among equal times is
    -- by creation (below), not by id as the sorted set's.
    local last = found[#found]
    local seen = {}
    for i = 1, #found, 2 do seen[found[i]] = true end
    for i, member in ipairs(redis.call('ZRANGEBYSCORE', q(queue, state), last, last)) do
      if not seen[member] then
        found[#found + 1] = member
        found[#found + 1] = last
      end
    end
  end
  for i = 1, #found, 2 do
    local id = found[i]
    candidates[#candidates + 1] = {id = id, due = tonumber(found[i + 1]), from = state,
      created = tonumber(redis.call('HGET', tkey(id), 'created'))}
  end
end
table.sort(candidates, function(a, b)
  if a.due ~= b.due then return a.due < b.due end
  if a.created ~= b.created then return a.created < b.created end
  return a.id < b.id
end)
local out = {}
for i = 1, math.min(limit, #candidates) do
  local c = candidates[i]
  local lease_id = ARGV[7 + i]
  -- Lua would write a number with 14 digits: a time needs 17.
  local until_ = string.format('%.17g', now + seconds)
  redis.call('ZREM', q(queue, c.from), c.id)
  redis.call('ZADD', q(queue, 'running'), until_, c.id)
  redis.call('HSET', tkey(c.id), 'state', 'running', 'lease_id', lease_id,
             'lease_until', until_, 'consumer', consumer)
  redis.call('HINCRBY', tkey(c.id), 'attempts', 1)
  out[#out + 1] = {c.id, lease_id, redis.call('HGETALL', tkey(c.id))}
end
return out
""",
    "holds": r"""
if held(ARGV[3], ARGV[4]) then return 1 end
return 0
""",
    "extend": r"""
local f = held(ARGV[3], ARGV[4])
if not f then return 0 end
local until_ = string.format('%.17g', tonumber(ARGV[5]) + tonumber(ARGV[6]))
redis.call('HSET', tkey(ARGV[3]), 'lease_until', until_)
redis.call('ZADD', q(f[3], 'running'), until_, ARGV[3])
return 1
""",
    # ARGV: P, wake, id, lease_id, kind (done | queued | dead), time, error
    "settle": r"""
local id, kind, at, err = ARGV[3], ARGV[5], ARGV[6], ARGV[7]
local f = held(id, ARGV[4])
if not f then return 0 end
local queue = f[3]
redis.call('ZREM', q(queue, 'running'), id)
redis.call('HSET', tkey(id), 'state', kind, 'lease_id', '', 'lease_until', '')
if kind == 'queued' then
  redis.call('HSET', tkey(id), 'eta', at, 'last_error', err)
  redis.call('ZADD', q(queue, 'queued'), at, id)
  wake(queue, 1)
else
  redis.call('HSET', tkey(id), 'finished', at)
  if kind == 'dead' then redis.call('HSET', tkey(id), 'last_error', err) end
  redis.call('ZADD', q(queue, kind), at, id)
  undedup(queue, f[4], id)
end
return 1
""",
    "stats": r"""
local queue, now = ARGV[3], ARGV[4]
local oldest = redis.call('ZRANGEBYSCORE', q(queue, 'queued'), '-inf', now,
                          'WITHSCORES', 'LIMIT', 0, 1)
return {redis.call('ZCARD', q(queue, 'prepared')),
        redis.call('ZCOUNT', q(queue, 'queued'), '-inf', now),
        redis.call('ZCOUNT', q(queue, 'queued'), '(' .. now, '+inf'),
        redis.call('ZCARD', q(queue, 'running')),
        redis.call('ZCARD', q(queue, 'done')),
        redis.call('ZCARD', q(queue, 'dead')),
        oldest[2] or ''}
""",
    "queues": r"""
local out = {}
for _, queue in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
  local n = 0
  for _, state in ipairs({'prepared', 'queued', 'running', 'done', 'dead'}) do
    n = n + redis.call('ZCARD', q(queue, state))
  end
  if n > 0 then out[#out + 1] = queue end
end
return out
""",
    "requeue": r"""
local id, now = ARGV[3], ARGV[4]
local f = redis.call('HMGET', tkey(id), 'state', 'queue', 'dedup')
if f[1] ~= 'dead' then return 0 end
redis.call('ZREM', q(f[2], 'dead'), id)
redis.call('ZADD', q(f[2], 'queued'), now, id)
redis.call('HSET', tkey(id), 'state', 'queued', 'eta', now, 'attempts', 0,
           'finished', '', 'consumer', '')
if f[3] ~= '' and redis.call('HSETNX', q(f[2], 'dedup'), f[3], id) == 0 then
  -- Another task holds the key now: this one gives it up (else the key
  -- would go with that task's end while this one still runs).
  redis.call('HSET', tkey(id), 'dedup', '')
end
wake(f[2], 1)
return 1
""",
    "delete": r"""
local id = ARGV[3]
local f = redis.call('HMGET', tkey(id), 'state', 'queue')
if f[1] ~= 'dead' and f[1] ~= 'done' then return 0 end
redis.call('ZREM', q(f[2], f[1]), id)
redis.call('DEL', tkey(id))
return 1
""",
    "next_eta": r"""
local best = nil
for _, state in ipairs({'queued', 'running'}) do
  local first = redis.call('ZRANGE', q(ARGV[3], state), 0, 0, 'WITHSCORES')
  if first[2] and (best == nil or tonumber(first[2]) < tonumber(best)) then
    best = first[2]
  end
end
return best
""",
    # ARGV: P, wake, cutoff, now, in-doubt error, batch. Returns {count,
    # more}: a batch per queue per call, so that Redis is never blocked
    # long (the caller calls again while there is more).
    "recover": r"""
local count, more = 0, 0
local batch = tonumber(ARGV[6])
for _, queue in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
  local old = redis.call('ZRANGEBYSCORE', q(queue, 'prepared'), '-inf',
                         '(' .. ARGV[3], 'LIMIT', 0, batch)
  if #old == batch then more = 1 end
  for _, id in ipairs(old) do
    local f = redis.call('HMGET', tkey(id), 'token', 'dedup')
    redis.call('ZREM', q(queue, 'prepared'), id)
    redis.call('ZADD', q(queue, 'dead'), ARGV[4], id)
    redis.call('SREM', P .. 'token:' .. (f[1] or ''), id)
    redis.call('HSET', tkey(id), 'state', 'dead', 'token', '', 'finished', ARGV[4],
               'last_error', ARGV[5])
    undedup(queue, f[2] or '', id)
    count = count + 1
  end
end
return {count, more}
""",
    # ARGV: P, wake, done cutoff, dead cutoff ('' keeps them), batch.
    # Returns {count, more}, as recover.
    "purge": r"""
local count, more = 0, 0
local batch = tonumber(ARGV[5])
for _, queue in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
  for _, pair in ipairs({{'done', ARGV[3]}, {'dead', ARGV[4]}}) do
    if pair[2] ~= '' then
      local old = redis.call('ZRANGEBYSCORE', q(queue, pair[1]), '-inf', '(' .. pair[2],
                             'LIMIT', 0, batch)
      if #old == batch then more = 1 end
      for _, id in ipairs(old) do
        redis.call('DEL', tkey(id))
        redis.call('ZREM', q(queue, pair[1]), id)
      end
      count = count + #old
    end
  end
end
return {count, more}
""",
    # ARGV: P, wake, now, ttl. Returns the fresh heartbeats (name, JSON
    # ...) and drops the stale ones, in one step (a heartbeat written
    # meanwhile is not lost).
    "consumers": r"""
local key = P .. 'consumers'
local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local all = redis.call('HGETALL', key)
local out = {}
for i = 1, #all, 2 do
  local ok, info = pcall(cjson.decode, all[i + 1])
  local seen = ok and type(info) == 'table' and tonumber(info['seen'])
  if seen and now - seen <= ttl then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  else
    redis.call('HDEL', key, all[i])
  end
end
return out
""",
}


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _number(value):
    """A Lua-side score or time as Python float (repr round-trips)."""
    return float(_text(value))


def _format(value):
    return repr(float(value))


@implementer(ITaskBackend)
class RedisBackend:
    """See ITaskBackend and the module's docstring. ``url``: where Redis
    is; ``client``: a redis.Redis to use instead (tests)."""

    def __init__(self, url, client=None, socket_timeout=SOCKET_TIMEOUT):
        import redis
        self._errors = redis.RedisError
        self._sentinel = None
        self.socket_timeout = socket_timeout
        self.url = str(url).strip()
        kind, target, self.prefix, options = parse_url(self.url)
        if client is not None:
            self._redis = client
        elif kind == "url":
            self._redis = redis.Redis.from_url(
                target, socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout, health_check_interval=30)
        else:
            from redis.backoff import NoBackoff
            from redis.retry import Retry
            from redis.sentinel import Sentinel
            sentinels, service, db = target
            options = dict(options)
            tls = {name: options.pop(name) for name in list(options)
                   if name.startswith("ssl")}
            sentinel_password = options.pop("sentinel_password", None)
            timeouts = {"socket_timeout": self.socket_timeout,
                        "socket_connect_timeout": self.socket_timeout}
            # One try per Sentinel: a hung one must not cost ten timeouts
            # (redis-py's default retries) before the next is asked.
            self._sentinel = Sentinel(
                sentinels, sentinel_kwargs={
                    **timeouts, **tls, "retry": Retry(NoBackoff(), 0),
                    **({"password": sentinel_password} if sentinel_password else {})},
                **timeouts)
            self._redis = self._sentinel.master_for(service, db=db, **timeouts, **tls,
                                                    **options)
        self._scripts = {name: self._redis.register_script(_PRELUDE + body)
                         for name, body in _SCRIPTS.items()}

    def __repr__(self):
        return f"<RedisBackend {public_url(self.url)!r}>"

    def _run(self, name, *args, what):
        try:
            return self._scripts[name](args=[self.prefix, WAKE_LIMIT, *args])
        except self._errors as exc:
            hint = (" (Redis is full and evicts nothing, as it should: raise its "
                    "maxmemory, or find what fills it)" if "maxmemory" in str(exc)
                    else "")
            raise TaskQueueUnavailableError(
                f"the task queue on Redis {public_url(self.url)!r} could not "
                f"{what}: {exc}{hint}") from exc

    def _call(self, what, method, *args, **kwargs):
        try:
            return getattr(self._redis, method)(*args, **kwargs)
        except self._errors as exc:
            raise TaskQueueUnavailableError(
                f"the task queue on Redis {public_url(self.url)!r} could not "
                f"{what}: {exc}") from exc

    # decoding

    @staticmethod
    def _task(task_id, flat):
        stored = {}
        pairs = iter(flat.items()) if isinstance(flat, dict) else zip(flat[::2], flat[1::2])
        for key, value in pairs:
            stored[_text(key)] = value
        if not stored:
            return None
        task = json.loads(_text(stored["request"]))
        for name in ("queue", "state", "dedup", "consumer", "last_error"):
            task[name] = _text(stored.get(name, b""))
        for name in _FLOATS:
            text = _text(stored.get(name, b""))
            task[name] = float(text) if text != "" else None
        for name in _INTS:
            task[name] = int(_text(stored[name]))
        for name in _NULLABLE:
            if task[name] == "":
                task[name] = None
        task["payload"] = bytes(stored.get("payload", b""))
        task["id"] = _text(task_id)
        return task

    # ITaskBackend

    def prepare(self, tasks, token, now=None):
        now = time.time() if now is None else now
        args, payloads = [token, _format(now), len(tasks)], []
        for task in tasks:
            # Checked before the script: one that fails midway leaves what
            # it wrote (Redis does not roll a script back).
            if not all(isinstance(task[name], (int, float)) and math.isfinite(task[name])
                       for name in ("eta", "created")):
                raise TaskQueueUnavailableError(
                    f"task {task.get('id')!r}: eta and created must be finite times")
            args += [task["id"], task["queue"], task.get("dedup") or "",
                     _format(task["eta"]), _format(task["created"]),
                     int(task["attempts"]), int(task["max_attempts"]),
                     json.dumps({name: task[name] for name in _REQUEST_FIELDS})]
            payloads.append(bytes(task.get("payload") or b""))
        stored = self._run("prepare", *args, *payloads, what="store tasks")
        return [_text(task_id) for task_id in stored]

    def find(self, queue, dedup):
        found = self._call("find a task by its dedup key", "hget",
                           f"{self.prefix}q:{queue}:dedup", dedup)
        return None if found is None else _text(found)

    def confirm(self, token):
        return int(self._run("confirm", token, what="confirm tasks"))

    def discard(self, token):
        return int(self._run("discard", token, what="discard tasks"))

    def lease(self, queue, consumer, limit, lease_seconds, now=None):
        now = time.time() if now is None else now
        limit = max(0, int(limit))
        ids = [uuid.uuid4().hex for _ in range(limit)]
        rows = self._run("lease", queue, consumer, limit, _format(lease_seconds),
                         _format(now), *ids, what="lease tasks")
        return [((_text(task_id), _text(lease_id)), self._task(task_id, flat))
                for task_id, lease_id, flat in rows]

    def holds(self, lease):
        return bool(self._run("holds", *lease, what="check a lease"))

    def extend(self, lease, lease_seconds, now=None):
        now = time.time() if now is None else now
        return bool(self._run("extend", *lease, _format(now), _format(lease_seconds),
                              what="extend a lease"))

    def _settle(self, lease, kind, at, error=""):
        return bool(self._run("settle", *lease, kind, _format(at), str(error),
                              what=f"settle a task ({kind})"))

    def ack(self, lease, now=None):
        return self._settle(lease, "done", time.time() if now is None else now)

    def retry(self, lease, error, eta):
        return self._settle(lease, "queued", eta, error)

    def bury(self, lease, error, now=None):
        return self._settle(lease, "dead", time.time() if now is None else now, error)

    def status(self, task_id):
        flat = self._call("read a task", "hgetall", f"{self.prefix}task:{task_id}")
        return self._task(task_id, flat) if flat else None

    def stats(self, queue, now=None):
        now = time.time() if now is None else now
        prepared, queued, scheduled, running, done, dead, oldest = self._run(
            "stats", queue, _format(now), what="count tasks")
        oldest = _text(oldest)
        return {"prepared": int(prepared), "queued": int(queued),
                "scheduled": int(scheduled), "running": int(running),
                "done": int(done), "dead": int(dead),
                "oldest_queued_age": max(0.0, now - float(oldest)) if oldest else 0.0}

    def queues(self):
        return sorted(_text(name) for name in self._run("queues", what="list queues"))

    def dead_letters(self, queue, limit=100):
        limit = max(0, int(limit))
        if not limit:
            return []
        pairs = self._call("list dead tasks", "zrevrange", f"{self.prefix}q:{queue}:dead",
                           0, limit - 1, withscores=True)
        tasks = [task for task in (self.status(_text(task_id)) for task_id, _ in pairs)
                 if task is not None]
        tasks.sort(key=lambda task: task["id"])
        tasks.sort(key=lambda task: task["finished"], reverse=True)
        return tasks

    def requeue(self, task_id, now=None):
        now = time.time() if now is None else now
        return bool(self._run("requeue", task_id, _format(now), what="requeue a task"))

    def delete(self, task_id):
        return bool(self._run("delete", task_id, what="delete a task"))

    def next_eta(self, queue):
        found = self._run("next_eta", queue, what="find the next due task")
        return None if found is None else _number(found)

    def recover(self, older_than, now=None):
        now = time.time() if now is None else now
        return self._batched("recover", _format(now - older_than), _format(now),
                             IN_DOUBT, what="recover tasks in doubt")

    def purge(self, older_than, now=None, dead_older_than=None):
        now = time.time() if now is None else now
        dead = "" if dead_older_than is None else _format(now - dead_older_than)
        return self._batched("purge", _format(now - older_than), dead,
                             what="purge old tasks")

    def _batched(self, name, *args, what):
        total = 0
        while True:
            count, more = self._run(name, *args, BATCH, what=what)
            total += int(count)
            if not int(more):
                return total

    def secret(self):
        import secrets
        key = f"{self.prefix}secret"
        self._call("store the secret", "set", key, secrets.token_hex(32), nx=True)
        return _text(self._call("read the secret", "get", key))

    def close(self):
        clients = [self._redis]
        if self._sentinel is not None:
            clients += self._sentinel.sentinels
        for client in clients:
            try:
                client.close()
            except self._errors:  # pragma: no cover - closing a broken pool
                pass

    # beyond ITaskBackend: blocking reads, the consumers' heartbeats

    def wait_for_tasks(self, queues, timeout):
        """Block until a task is queued or retried on one of ``queues``
        (any instance's), or for ``timeout`` seconds. True if woken."""
        keys = [f"{self.prefix}q:{queue}:wake" for queue in queues]
        # Within the socket's timeout, which redis-py does not stretch for
        # a blocking read: the caller waits again if it must.
        timeout = max(0.01, min(timeout, self.socket_timeout * 0.8))
        try:
            return self._redis.blpop(keys, timeout=timeout) is not None
        except self._errors as exc:
            raise TaskQueueUnavailableError(
                f"the task queue on Redis {public_url(self.url)!r} could not "
                f"wait for tasks: {exc}") from exc

    def heartbeat(self, consumer, info, now=None):
        """Note that ``consumer`` (a name) is alive, with ``info`` (plain
        data: its queues, how many run); a name silent for CONSUMER_TTL
        seconds is dropped from ``consumers``."""
        now = time.time() if now is None else now
        self._call("note a consumer", "hset", f"{self.prefix}consumers", consumer,
                   json.dumps({**info, "seen": now}))

    def consumers(self, now=None):
        """The consumers heard from within CONSUMER_TTL seconds: name ->
        their last heartbeat's info (with ``seen``); older ones are
        removed."""
        now = time.time() if now is None else now
        flat = self._run("consumers", _format(now), _format(CONSUMER_TTL),
                         what="list consumers")
        return {_text(name): json.loads(_text(value))
                for name, value in zip(flat[::2], flat[1::2])}
