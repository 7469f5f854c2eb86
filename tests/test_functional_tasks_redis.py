"""Background tasks on Redis: three real Zope instances (real waitress,
over HTTP) on one ZEO database sharing one private redis-server (AOF on,
``appendfsync always``), as on three machines. A flood is spread over
them with each task's effect once; one instance killed mid-flood, or
Redis itself, loses nothing; Redis down at commit fails the commit, and
down while consuming is survived; periodic tasks fire once per slot."""

import json
import re
import signal
import time

import pytest

from conftest import wait_for
from deployment import zeo  # noqa: F401 (a fixture)
from zopeinstance import ZopeInstance


pytestmark = pytest.mark.functional

CONFIG = {"task_consumer": "on", "task_poll": "0.5", "task_backoff": "0.05",
          "task_lease": "3", "task_timeout": "20", "task_concurrency": "2"}


@pytest.fixture
def redis_aof(tmp_path):
    """A private redis-server for the test, with its AOF on."""
    from redisserver import private_redis
    server = private_redis(tmp_path / "redis", appendonly=True)
    yield server
    server.kill()


@pytest.fixture
def cluster(tmp_path, zeo, redis_aof):  # noqa: F811 (zeo: a fixture)
    """``cluster(name, **config)``: a Zope instance on the shared ZEO
    database and Redis; stopped at the end."""
    made = []

    def make(name, **config):
        product_config = {**CONFIG, "task_backend": redis_aof.url, **config}
        instance = ZopeInstance(tmp_path / name, threads=4, product_config=product_config,
                                zeo_address=zeo.address).create()
        made.append(instance)
        return instance.start()

    make.redis = redis_aof
    yield make
    for instance in made:
        instance.stop()


def effects(zope):
    return json.loads(zope.get("/@@task-effects")[1])


def flood(zope, token, n, **job):
    path = "/@@task-effect" + ("?" + "&".join(f"{k}={v}" for k, v in job.items())
                               if job else "")
    query = f"n={n}&token={token}&path={path.replace('?', '%3F').replace('&', '%26')}"
    code, body = zope.get(f"/@@queue-many?{query}", timeout=120)
    assert (code, body) == (200, str(n)), body
    return [f"{token}-{number}" for number in range(n)]


def ran_on(instances, token):
    return [zope.access_log().count(f"token={token}-") for zope in instances]


def metrics(zope):
    code, body = zope.get("/@@futures-metrics?format=prometheus",
                          headers=zope.admin_headers())
    assert code == 200
    return body


def test_a_thousand_tasks_spread_over_three_instances_each_effect_once(cluster):
    instances = [cluster(name) for name in ("a", "b", "c")]
    instances[0].get("/@@task-effect?token=setup")  # the effects' tree
    tokens = flood(instances[0], "spread", 1000)
    wait_for(lambda: len([t for t in effects(instances[1]) if t.startswith("spread-")])
             == 1000, timeout=180, interval=0.5, message="1,000 effects")
    counts = effects(instances[2])
    assert all(counts[token] == 1 for token in tokens)
    ran = ran_on(instances, "spread")
    # Every instance took a share; a request more than the tasks only for
    # a conflict Zope retried within it (one access-log line per request).
    assert all(ran) and sum(ran) == 1000, ran
    # The queue's figures come from Redis: the same on every instance,
    # which also lists the three consumers.
    for zope in instances:
        text = metrics(zope)
        assert re.search(r'^collective_futures_tasks\{queue="default",'
                         r'state="done"\} 1000\.0$', text, re.M), text
        assert re.search(r"^collective_futures_task_consumers 3\.0$", text, re.M)
    code, page = instances[1].get("/Control_Panel/manage_futures", headers=instances[1].admin_headers())
    assert code == 200 and "Instances consuming" in page
    for zope in instances:
        assert f"http://127.0.0.1:{zope.port}" in page


def test_an_instance_killed_mid_flood_loses_nothing(cluster):
    instances = [cluster(name) for name in ("a", "b", "c")]
    instances[0].get("/@@task-effect?token=setup")
    tokens = flood(instances[0], "killed", 300, sleep=0.02)
    wait_for(lambda: instances[1].access_log().count("token=killed-") >= 20,
             timeout=60, message="b consuming")
    instances[1].process.send_signal(signal.SIGKILL)
    instances[1].process.wait(20)
    wait_for(lambda: len([t for t in effects(instances[0]) if t.startswith("killed-")])
             == 300, timeout=180, interval=0.5, message="300 effects")
    counts = effects(instances[2])
    assert all(counts[token] == 1 for token in tokens), \
        {t: counts.get(t) for t in tokens if counts.get(t) != 1}


def test_redis_restarted_mid_flood_loses_nothing(cluster):
    instances = [cluster(name) for name in ("a", "b")]
    instances[0].get("/@@task-effect?token=setup")
    tokens = flood(instances[0], "restart", 300, sleep=0.02)
    wait_for(lambda: sum(ran_on(instances, "restart")) >= 30, timeout=60,
             message="the flood under way")
    cluster.redis.kill()  # SIGKILL: only what the AOF has
    time.sleep(1.0)  # the consumers find Redis gone
    cluster.redis.start()
    wait_for(lambda: len([t for t in effects(instances[0]) if t.startswith("restart-")])
             == 300, timeout=180, interval=0.5, message="300 effects")
    counts = effects(instances[1])
    assert all(counts[token] == 1 for token in tokens)
    assert any("could not lease a task" in zope.log() or "could not wait for tasks"
               in zope.log() for zope in instances)


def test_redis_down_fails_the_commit_and_consumers_recover_by_themselves(cluster):
    zope = cluster("a")
    zope.get("/@@task-effect?token=setup")
    cluster.redis.kill()
    before = len(zope.log())
    code, _ = zope.get("/@@queue-task?path=/@@task-effect&token=down")
    assert code == 500
    log = zope.log()[before:]
    assert "TaskQueueUnavailableError" in log and "could not store tasks" in log
    assert f"127.0.0.1:{cluster.redis.port}" in log
    # The metrics and the Control Panel say so.
    assert re.search(r"^collective_futures_tasks_up 0\.0$", metrics(zope), re.M)
    code, page = zope.get("/Control_Panel/manage_futures", headers=zope.admin_headers())
    assert "The task queue cannot be read" in page
    time.sleep(1.5)  # the consumer meets the outage too
    cluster.redis.start()
    # Nothing was queued by the failed commit; a new task runs, the
    # consumer having recovered by itself.
    code, task_id = zope.get("/@@queue-task?path=/@@task-effect&token=after")
    assert code == 200
    wait_for(lambda: effects(zope).get("after") == 1, timeout=30,
             message="a task after the outage")
    assert "down" not in effects(zope)
    assert re.search(r"^collective_futures_tasks_up 1\.0$", metrics(zope), re.M)


def test_a_container_passes_the_settings_in_environment_variables(tmp_path, redis_aof):
    # As container images do: no <product-config>, the settings in
    # COLLECTIVE_FUTURES_* variables; the instance consumes from Redis.
    zope = ZopeInstance(tmp_path / "env", environment={
        "COLLECTIVE_FUTURES_TASK_BACKEND": redis_aof.url,
        "COLLECTIVE_FUTURES_TASK_CONSUMER": "on",
        "COLLECTIVE_FUTURES_TASK_POLL": "0.5"}).create().start()
    try:
        code, task_id = zope.get("/@@queue-task?path=/@@task-effect&token=env")
        assert code == 200
        wait_for(lambda: effects(zope).get("env") == 1, timeout=30,
                 message="the task run from Redis")
        assert redis_aof.client().exists(f"collective.futures:task:{task_id}")
    finally:
        zope.stop()
    # A typo in a variable's name stops Zope at startup, naming it.
    bad = ZopeInstance(tmp_path / "typo", environment={
        "COLLECTIVE_FUTURES_TASK_CONSUMERS": "on"}).create()
    with pytest.raises(RuntimeError) as raised:
        bad.start(timeout=60)
    assert "environment variable COLLECTIVE_FUTURES_TASK_CONSUMERS: no such option" \
        in str(raised.value)


def test_a_periodic_task_fires_once_per_slot_across_three_instances(cluster):
    config = {"task_periodic.tick": "@every 2 /@@task-job?token=tick"}
    instances = [cluster(name, **config) for name in ("a", "b", "c")]

    def requests():
        return sum(zope.access_log().count("task-job?token=tick") for zope in instances)

    wait_for(lambda: requests() >= 4, timeout=40, message="four slots run")
    for zope in instances:
        zope.stop()
    client = cluster.redis.client()
    slots, states = [], []
    for key in client.scan_iter("collective.futures:task:*"):
        stored = client.hgetall(key)
        if b"token=tick" in stored[b"request"]:
            slots.append(float(stored[b"eta"]))
            states.append(stored[b"state"])
    assert len(slots) == len(set(slots)) >= 4  # one task per slot
    assert all(eta % 2 == 0 for eta in slots)
    done, running = states.count(b"done"), states.count(b"running")
    assert done <= requests() <= done + running
