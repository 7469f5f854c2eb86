"""What only the Redis backend does, beyond the contract that
tests/test_tasks_backends.py runs on every backend: processes on a real
redis-server never share a lease, an outage is an error naming the server
(without its password) and is over by itself when Redis is back, tasks
survive a Redis crash with AOF, blocking reads, the consumers' heartbeats,
the URLs."""

import os
import shutil
import threading
import time
import uuid

import pytest

from collective.futures.exceptions import TaskQueueUnavailableError
from collective.futures.tasks.redis import (
    CONSUMER_TTL, RedisBackend, parse_url, public_url)
from test_tasks_backends import T0, add, processes_share_without_overlap, state, task


if shutil.which("redis-server") is None and not os.environ.get("CI"):
    # In CI a missing binary fails the tests that need it (.ci/run
    # installs it): see redisserver.private_redis.
    pytest.skip("redis-server is not installed (apt-get install redis-server)",
                allow_module_level=True)


def backend_on(server, **kw):
    return RedisBackend(f"{server.url}?prefix=t-{uuid.uuid4().hex}:", **kw)


def test_processes_never_hold_the_same_lease(redis_server, tmp_path):
    url = f"{redis_server.url}?prefix=p-{uuid.uuid4().hex}:"
    backend = RedisBackend(url)
    try:
        shares = processes_share_without_overlap(backend, "RedisBackend", url, tmp_path,
                                                 n=300)
        assert sum(1 for share in shares if share) >= 2  # they did share the work
    finally:
        backend.close()


def test_an_outage_is_an_error_naming_redis_and_is_over_when_it_returns(tmp_path):
    from redisserver import RedisServer, free_port
    server = RedisServer(tmp_path / "redis", port=free_port())
    secret_url = f"redis://:hunter2@127.0.0.1:{server.port}/0"
    backend = RedisBackend(secret_url)
    # Down (not started yet): the vote's prepare fails, naming the server
    # and not the password.
    with pytest.raises(TaskQueueUnavailableError) as raised:
        backend.prepare([task()], "t")
    message = str(raised.value)
    assert f"127.0.0.1:{server.port}" in message and "could not store tasks" in message
    assert "hunter2" not in message and ":***@" in message
    with pytest.raises(TaskQueueUnavailableError):
        backend.lease("default", "c1", 1, 30)
    # Back (with that password): the same backend object works again.
    server.password = "hunter2"
    server.start()
    try:
        ids = add(backend, task(eta=T0))
        assert [t["id"] for _, t in backend.lease("default", "c1", 1, 30, now=T0)] == ids
    finally:
        backend.close()
        server.stop()


def test_confirmed_tasks_survive_a_redis_crash_with_aof(tmp_path):
    from redisserver import RedisServer
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    backend = RedisBackend(server.url)
    try:
        ids = add(backend, *[task() for _ in range(50)])
        prepared = backend.prepare([task()], "in-flight")
        server.kill()  # SIGKILL: no shutdown save
        server.start()
        assert [state(backend, i) for i in ids] == ["queued"] * 50
        assert state(backend, prepared[0]) == "prepared"
    finally:
        backend.close()
        server.stop()


def test_an_idle_consumer_blocks_until_any_client_queues_a_task(redis_server):
    waiting = backend_on(redis_server)
    producer = RedisBackend(waiting.url)
    try:
        started = time.monotonic()
        assert waiting.wait_for_tasks(["default"], 0.3) is False  # the control
        assert time.monotonic() - started >= 0.25
        woken = []

        def wait():
            began = time.monotonic()
            woken.append((waiting.wait_for_tasks(["other", "default"], 20),
                          time.monotonic() - began))

        thread = threading.Thread(target=wait, name="test-waiter", daemon=True)
        thread.start()
        time.sleep(0.2)
        add(producer, task())
        thread.join(20)
        assert woken and woken[0][0] is True and woken[0][1] < 5
    finally:
        waiting.close()
        producer.close()


def test_consumers_heartbeats_are_listed_while_fresh(redis_server):
    backend = backend_on(redis_server)
    try:
        backend.heartbeat("a (1)", {"queues": ["default"], "running": 1}, now=T0)
        backend.heartbeat("b (2)", {"queues": ["default"], "running": 0}, now=T0 + 50)
        seen = backend.consumers(now=T0 + 60)
        assert sorted(seen) == ["a (1)", "b (2)"] and seen["a (1)"]["running"] == 1
        assert sorted(backend.consumers(now=T0 + CONSUMER_TTL + 10)) == ["b (2)"]
        assert backend.consumers(now=T0 + CONSUMER_TTL + 10) == \
            backend.consumers(now=T0 + CONSUMER_TTL + 10)  # a dropped one stays gone
    finally:
        backend.close()


@pytest.mark.parametrize("url, expected", [
    ("redis://localhost:6379/0", ("url", "redis://localhost:6379/0",
                                  "collective.futures:", {})),
    ("rediss://:pw@cache.example.org:6380/2?prefix=site1:",
     ("url", "rediss://:pw@cache.example.org:6380/2", "site1:", {})),
    ("unix:///run/redis/redis.sock?db=3",
     ("url", "unix:///run/redis/redis.sock?db=3", "collective.futures:", {})),
    ("redis+sentinel://:pw@s1:26379,s2:26379/mymaster/1",
     ("sentinel", ([("s1", 26379), ("s2", 26379)], "mymaster", 1),
      "collective.futures:", {"password": "pw"})),
    ("redis+sentinel://app:pw@s1:26379/mymaster?ssl=true&ssl_cert_reqs=required"
     "&sentinel_password=sp&prefix=p:",
     ("sentinel", ([("s1", 26379)], "mymaster", 0), "p:",
      {"username": "app", "password": "pw", "ssl": True, "ssl_cert_reqs": "required",
       "sentinel_password": "sp"})),
])
def test_urls_as_redis_py_reads_them_and_sentinel(url, expected):
    assert parse_url(url) == expected


@pytest.mark.parametrize("url, message", [
    ("redis://", "no host"),
    ("redis+sentinel://s1/mymaster", "is not HOST:PORT"),
    ("redis+sentinel://s1:26379/", "the path is /SERVICE"),
    ("redis+sentinel://s1:26379/m?sssl=true", "'sssl' is not an option"),
    ("redis+sentinel://s1:26379/m?ssl=maybe", "ssl is true or false"),
    ("redis://h/0?prefix=", "prefix"),
    ("http://h/", "is not a redis://"),
])
def test_a_bad_url_says_what_is_wrong(url, message):
    with pytest.raises(ValueError, match=message):
        parse_url(url)


def test_the_password_never_shows():
    assert public_url("redis://:s3cret@h:1/0") == "redis://:***@h:1/0"
    assert public_url("redis://user:s3cret@h:1/0") == "redis://user:***@h:1/0"
    assert public_url("redis://h:1/0") == "redis://h:1/0"
    # Unencoded / ? @ in a generated password; the query's passwords.
    assert public_url("redis://:Ab3/x?Y@9z@redis:6379/0") == "redis://:***@redis:6379/0"
    assert public_url("redis://h:1/0?password=s3cret&db=2") == "redis://h:1/0?password=***&db=2"
    assert public_url("redis+sentinel://s:1/m?sentinel_password=s3cret") == \
        "redis+sentinel://s:1/m?sentinel_password=***"
    assert "s3cret" not in repr(RedisBackend("redis://:s3cret@127.0.0.1:1/0"))


@pytest.mark.parametrize("value", [
    "redis://:Ab3/s3cret@redis:6379/0",            # no host, as urlsplit reads it
    "redis+sentinel://:s3cret@sentinel1/mymaster",  # no port
    "redis://:s3cret@h/0?prefix=",                  # an empty prefix
])
def test_a_bad_backend_setting_does_not_show_its_password(value):
    from collective.futures.exceptions import ConfigurationError
    from collective.futures.settings import Settings, from_environment
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_mapping({"task_backend": value})
    assert "s3cret" not in str(raised.value) and "task_backend" in str(raised.value)
    with pytest.raises(ConfigurationError) as raised:
        from_environment({"COLLECTIVE_FUTURES_TASK_BACKEND": value})
    assert "s3cret" not in str(raised.value)


def test_the_shipped_redis_conf_keeps_tasks_and_refuses_writes_when_full(tmp_path):
    # examples/deployment/redis.conf as docs/deployment.rst includes it
    # (its port, address and directory replaced).
    import pathlib
    from redisserver import RedisServer
    shipped = pathlib.Path(__file__).parent.parent / "examples/deployment" / "redis.conf"
    server = RedisServer(tmp_path / "redis", config=shipped).start()
    backend = RedisBackend(server.url)
    try:
        client = server.client()
        config = {key: client.config_get(key)[key] for key in
                  ("appendonly", "appendfsync", "maxmemory-policy", "maxmemory")}
        assert config == {"appendonly": "yes", "appendfsync": "everysec",
                          "maxmemory-policy": "noeviction",
                          "maxmemory": str(2**30)}
        ids = add(backend, task(eta=T0))  # the control: it works
        # Full (a limit below what it uses): the commit's prepare fails,
        # clearly, and stores nothing; nothing is evicted.
        client.config_set("maxmemory", "1")
        doomed = task()
        with pytest.raises(TaskQueueUnavailableError,
                           match="used memory > 'maxmemory'.*Redis is full"):
            backend.prepare([doomed, task()], "t")
        client.config_set("maxmemory", str(2**30))
        assert backend.status(doomed["id"]) is None
        assert state(backend, ids[0]) == "queued"
    finally:
        backend.close()
        server.kill()


def test_sentinel_finds_the_master_and_a_failover_is_survived(tmp_path):
    # A master, a replica, a Sentinel watching them (quorum 1, down after
    # a second); the backend names only the Sentinel. The master is
    # killed: the Sentinel promotes the replica, and the same backend
    # object carries on there with the tasks that were replicated.
    from conftest import wait_for
    from redisserver import RedisServer, free_port
    master = RedisServer(tmp_path / "master").start()
    replica = RedisServer(tmp_path / "replica",
                          extra=["--replicaof", "127.0.0.1", str(master.port)]).start()
    sentinel_port = free_port()
    conf = tmp_path / "sentinel" / "sentinel.conf"
    conf.parent.mkdir()
    conf.write_text(f"sentinel monitor tasks 127.0.0.1 {master.port} 1\n"
                    f"sentinel down-after-milliseconds tasks 1000\n"
                    f"sentinel failover-timeout tasks 5000\n")
    sentinel = RedisServer(tmp_path / "sentinel", port=sentinel_port, config=conf,
                           extra=["--sentinel"])
    sentinel.start()
    backend = RedisBackend(f"redis+sentinel://127.0.0.1:{sentinel_port}/tasks/0")
    try:
        before = add(backend, *[task(eta=T0) for _ in range(10)])
        assert master.client().wait(1, 5000) == 1  # on the replica too
        master.kill()
        wait_for(lambda: replica.client().info("replication")["role"] == "master",
                 timeout=60, interval=0.2, message="the replica promoted")

        def works():
            try:
                return add(backend, task(eta=T0))
            except TaskQueueUnavailableError:
                return None  # redis-py asks the Sentinel again

        after = wait_for(works, timeout=30, interval=0.2, message="the backend on the new master")
        leased = backend.lease("default", "c1", 20, 30, now=T0 + 1)
        assert sorted(t["id"] for _, t in leased) == sorted(before + after)
    finally:
        backend.close()
        for server in (sentinel, replica, master):
            server.kill()


def test_a_wait_longer_than_the_socket_timeout_is_cut_short_not_an_error(redis_server):
    # redis-py does not stretch its socket timeout for a blocking read: the
    # wait is kept within it (the consumer waits again).
    backend = RedisBackend(f"{redis_server.url}?prefix=w-{uuid.uuid4().hex}:",
                           socket_timeout=1.0)
    try:
        started = time.monotonic()
        assert backend.wait_for_tasks(["default"], 3.0) is False
        assert time.monotonic() - started < 1.0
        assert backend.wait_for_tasks(["default"], 3.0) is False  # the connection lives
    finally:
        backend.close()


def test_a_requeued_task_whose_key_another_holds_gives_it_up(redis_server):
    backend = backend_on(redis_server)
    try:
        (a,) = add(backend, task(dedup="k", eta=T0 - 1))
        lease, _ = backend.lease("default", "c1", 1, 30, now=T0)[0]
        backend.bury(lease, "bad", now=T0)
        (b,) = add(backend, task(dedup="k", eta=T0 + 100))  # holds the key now
        assert backend.requeue(a, now=T0 + 1)
        assert backend.status(a)["dedup"] is None and backend.find("default", "k") == b
        lease, _ = backend.lease("default", "c1", 1, 30, now=T0 + 200)[0]
        assert lease[0] in (a, b)
    finally:
        backend.close()
