"""Background tasks on a real Zope instance served by real waitress, over
HTTP, consuming its own SQLite queue: a committed transaction's task runs
once, an aborted one's never; a 404 fails once; failures are retried; a
request forged from outside is refused; a task whose work committed is
not run again; a task cut by SIGKILL runs again after the restart."""

import contextlib
import json
import re
import signal
import time
import urllib.parse

import pytest

from conftest import wait_for
from deployment import zeo  # noqa: F401 (a fixture)
from zopeinstance import ZopeInstance


pytestmark = pytest.mark.functional

CONFIG = {"task_consumer": "on", "task_poll": "0.1", "task_backoff": "0.05",
          "task_lease": "2", "task_timeout": "20"}


@pytest.fixture(scope="module")
def zope(tmp_path_factory):
    instance = ZopeInstance(tmp_path_factory.mktemp("tasks"), threads=3,
                            product_config=CONFIG).create()
    instance.start()
    yield instance
    instance.stop()


#: What @@queue-task passes on to taskqueue.add; the rest is the job's.
ADD_ARGUMENTS = ("delay", "dedup", "attempts", "backoff", "queue", "method", "fail")


def queue(zope, token, path="/@@task-job", **params):
    """Queue a task to ``path`` (its query: the job's ``params``) through
    @@queue-task, which passes the ADD_ARGUMENTS on; the task's id."""
    job = {k: v for k, v in params.items() if k not in ADD_ARGUMENTS}
    if job:
        path += "?" + urllib.parse.urlencode(job)
    add = {k: v for k, v in params.items() if k in ADD_ARGUMENTS}
    query = urllib.parse.urlencode({"path": path, "token": token, **add})
    status, body = zope.get(f"/@@queue-task?{query}")
    assert status == 200, body
    return body


def status(zope, task_id):
    code, body = zope.get(f"/@@task-status?id={task_id}")
    assert code == 200, body
    return json.loads(body)


def settled(zope, task_id, state, timeout=20):
    return wait_for(lambda: (status(zope, task_id) or {}).get("state") == state
                    and status(zope, task_id), timeout=timeout, interval=0.05,
                    message=f"task {task_id} {state}")


def runs(zope):
    return json.loads(zope.get("/@@task-runs")[1])


def counter(zope, name):
    return zope.counters().get(name, 0)


def test_a_committed_transactions_task_runs_once(zope):
    task_id = queue(zope, "once")
    done = settled(zope, task_id, "done")
    assert done["attempts"] == 1 and done["last_error"] is None
    assert runs(zope)["once"] == 1
    assert counter(zope, "task.once.started") == 1
    assert "consuming background tasks of default" in zope.log()


def test_the_manuals_example_queues_and_runs_its_task(zope):
    # docs/tasks.rst, snippet taskqueue-example, as written (the test
    # app's views run it): the view answers at once, the task converts.
    code, body = zope.get("/@@start-conversion")
    assert code == 200 and body.startswith("queued ")
    done = settled(zope, body.split()[1], "done")
    assert done["path"].endswith("/@@convert-document?format=pdf")
    assert zope.get("/@@app-attribute?name=converted_to") == (200, "'pdf'")


def test_an_aborted_transactions_task_never_runs(zope):
    status_code, _ = zope.get("/@@queue-task?path=/@@task-job&token=aborted&fail=1")
    assert status_code == 500
    # The control: a task queued after it, by a committed transaction,
    # runs; by then the aborted one would have run too (one queue, in
    # order of their eta).
    settled(zope, queue(zope, "after-aborted"), "done")
    assert "aborted" not in runs(zope)
    assert counter(zope, "task.aborted.started") == 0


def test_a_task_whose_path_is_not_found_fails_once(zope):
    task_id = queue(zope, "missing", path="/no-such-view")
    dead = settled(zope, task_id, "dead")
    assert dead["attempts"] == 1 and dead["last_error"].startswith("HTTP 404")


def test_a_failing_task_is_retried_then_succeeds(zope):
    task_id = queue(zope, "flaky", fail_first=2)
    done = settled(zope, task_id, "done")
    assert done["attempts"] == 3
    assert runs(zope)["flaky"] == 1


def test_a_conflict_error_is_retried_by_zope_then_by_the_queue(zope):
    # Two conflicts: Zope publishes the task's request again within the
    # same delivery (its retries), and it succeeds: one attempt. Five:
    # Zope's retries run out, the delivery fails with a 5xx, and the
    # queue delivers it again. Either way its write commits once.
    within = queue(zope, "conflict-within", conflict_first=2)
    again = queue(zope, "conflict-again", conflict_first=5)
    assert settled(zope, within, "done")["attempts"] == 1
    assert settled(zope, again, "done")["attempts"] == 2
    assert runs(zope)["conflict-within"] == runs(zope)["conflict-again"] == 1


def test_a_task_that_keeps_failing_goes_to_the_dead_letters(zope):
    task_id = queue(zope, "hopeless", fail_first=99, attempts=2)
    dead = settled(zope, task_id, "dead")
    assert dead["attempts"] == 2 and "attempt 2 of 2" in dead["last_error"]
    assert "hopeless" not in runs(zope)


def test_a_delayed_task_waits(zope):
    start = time.monotonic()
    task_id = queue(zope, "later", delay=1.5)
    assert status(zope, task_id)["state"] == "queued"
    settled(zope, task_id, "done")
    assert time.monotonic() - start >= 1.4


def test_a_dedup_key_returns_the_waiting_task(zope):
    first = queue(zope, "dedup-1", delay=2, dedup="nightly")
    second = queue(zope, "dedup-2", delay=2, dedup="nightly")
    assert second == first
    settled(zope, first, "done")
    assert "dedup-2" not in runs(zope) and runs(zope)["dedup-1"] == 1


def test_a_task_takes_the_queuing_requests_virtual_host_and_language(zope):
    code, task_id = zope.get(
        "/VirtualHostBase/https/www.example.org:443/VirtualHostRoot/@@queue-task"
        "?path=/@@task-job&token=vhost", headers={"Accept-Language": "fi"})
    assert code == 200
    settled(zope, task_id, "done")
    (info,) = [json.loads(name.partition(":")[2]) for name in zope.counters()
               if name.startswith("task.vhost.info:")]
    assert info["url"] == "https://www.example.org/@@task-job"
    assert info["accept_language"] == "fi"


def test_run_as_names_a_user_a_task_can_run_as_or_fails_at_add(zope):
    # Plain Zope's root user folder cannot authenticate a task's user:
    # naming one of its users fails at add(), naming the argument, and
    # queues nothing (rather than running the task as Anonymous).
    before = len(zope.log())
    for run_as, message in [
            ("admin", "run_as: 'admin': /acl_users cannot authenticate a "
                      "task's user"),
            ("nobody", "run_as: no user 'nobody' in /acl_users")]:
        code, _ = zope.get(f"/@@queue-task?path=/@@task-job&token=run-as-{run_as}"
                           f"&run_as={run_as}", headers=zope.admin_headers())
        assert code == 500
        assert message in zope.log()[before:]
    # Queued by that user implicitly, the task runs as Anonymous: add()
    # says so in the log.
    code, task_id = zope.get("/@@queue-task?path=/@@task-job&token=run-as-implicit",
                             headers=zope.admin_headers())
    assert code == 200
    assert ("a task queued by 'admin' of /acl_users will run as Anonymous: "
            "/acl_users cannot authenticate a task's user" in zope.log()[before:])
    # The control: ANONYMOUS is a user any task can run as.
    code, task_id = zope.get("/@@queue-task?path=/@@task-job&token=run-as-anonymous"
                             "&run_as=anonymous", headers=zope.admin_headers())
    assert code == 200
    settled(zope, task_id, "done")
    assert counter(zope, "task.run-as-anonymous.started") == 1
    assert counter(zope, "task.run-as-admin.started") == 0
    assert counter(zope, "task.run-as-nobody.started") == 0


@pytest.mark.parametrize("name, expression", [
    ("module", "modules['collective.futures.taskqueue'].add('/@@task-job', "
               "params={'token': 'ttw'}, run_as='admin')"),
    ("attribute", "modules['collective.futures'].taskqueue.add('/@@task-job', "
                  "params={'token': 'ttw'})"),
])
def test_restricted_code_cannot_queue_a_task(zope, name, expression):
    # A through-the-web template, even a Manager's request: taskqueue is
    # for trusted code (run_as names any user).
    from test_templates_security import add_template
    add_template(zope, f"ttw_task_{name}",
                 f'<p tal:content="python: {expression}">x</p>')
    status, body = zope.get(f"/ttw_task_{name}", headers=zope.admin_headers())
    assert status == 401, (status, body[:300])
    # The control: the same harness renders a template that stays within.
    add_template(zope, f"ttw_task_control_{name}", '<p tal:content="python: 6 * 7">x</p>')
    assert zope.get(f"/ttw_task_control_{name}") == (200, "<p>42</p>")
    assert counter(zope, "task.ttw.started") == 0


def test_a_forged_task_request_is_refused(zope):
    forged = {"X-Task-Id": "0" * 32, "X-Futures-Task-Lease": "l",
              "X-Futures-Task-Expires": str(int(time.time()) + 60),
              "X-Futures-Task-Signature": "ab" * 32, "X-Futures-Task-User": "admin"}
    code, _ = zope.get("/@@task-job?token=forged", headers=forged)
    assert code == 403
    # A header alone is refused too, not ignored.
    assert zope.get("/@@task-job?token=forged", headers={"X-Task-Id": "x"})[0] == 403
    assert counter(zope, "task.forged.started") == 0
    assert "refused a request claiming to be a task's" in zope.log()
    # The done view is for task requests only.
    assert zope.get("/@@futures-task-done")[0] == 403
    # The control: the same view, without task headers, runs.
    assert zope.get("/@@task-job?token=plain") == (200, "done")


def test_a_signed_request_must_be_the_request_of_the_task_it_names(zope):
    # Whoever holds the secret and a current lease (a reader of the queue's
    # file) still cannot publish another path: the request must be the
    # one the queue stored. A task the consumer will not take for a
    # minute, leased here.
    from collective.futures.tasks import signature
    from collective.futures.tasks.sqlite import SQLiteBackend
    task_id = queue(zope, "held", delay=60)
    backend = SQLiteBackend(zope.home / "var/tasks.db")
    try:
        secret = backend.secret()
        ((lease, task),) = backend.lease("default", "test", 1, 60, now=time.time() + 61)
        assert lease[0] == task_id

        def signed(path):
            forged = dict(task, path=path)
            return signature.headers(secret, forged, lease[1], time.time() + 60)

        other = "/@@task-job?token=evil"
        assert zope.get(other, headers=signed(other))[0] == 403
        assert counter(zope, "task.evil.started") == 0
        # The control: the task's own request, so signed, runs.
        assert zope.get(task["path"], headers=signed(task["path"])) == (200, "done")
        assert counter(zope, "task.held.started") == 1
    finally:
        backend.close()
    assert "not the request of the task it names" in zope.log()


def test_an_empty_task_header_is_refused_not_an_error(zope):
    assert zope.get("/@@task-job?token=empty", headers={"X-Task-Id": ""})[0] == 403
    assert counter(zope, "task.empty.started") == 0


def test_a_delivery_that_lost_its_lease_does_not_commit(make_zope):
    # The first delivery outlasts task_timeout: the consumer gives up on
    # it and delivers the task again (the second run is quick, and
    # commits); when the first one reaches its commit, its lease is no
    # longer the task's: its work is aborted, with a warning. (Without
    # that fence its write of the task's record would conflict with the
    # second delivery's, and Zope's retry of it be refused for its lost
    # lease: the effect would still be once, the reason less clear.)
    zope = make_zope(threads=3, product_config={**CONFIG, "task_timeout": "1"})
    task_id = queue(zope, "fenced", sleep_once=3)
    done = settled(zope, task_id, "done", timeout=30)
    assert done["attempts"] == 2
    # The first delivery reaches its end (its view returns), then its
    # commit, fenced off.
    wait_for(lambda: counter(zope, "task.fenced.committed") == 2, timeout=10,
             message="the first delivery's view over")
    fenced = "this delivery lost its lease before it committed"
    wait_for(lambda: fenced in zope.log() or runs(zope)["fenced"] > 1, timeout=10,
             message="the first delivery's commit")
    assert runs(zope)["fenced"] == 1
    assert fenced in zope.log()
    assert counter(zope, "task.fenced.started") == 2


@pytest.fixture
def instances(tmp_path, zeo):
    """``instances(name, **config)``: Zope instances on one ZEO database
    and one SQLite task queue, as on one machine; stopped at the end."""
    made = []

    def make(name, **config):
        product_config = {**CONFIG, "task_backend": f"sqlite:{tmp_path / 'tasks.db'}",
                          **config}
        instance = ZopeInstance(tmp_path / name, threads=3, product_config=product_config,
                                zeo_address=zeo.address).create()
        made.append(instance)
        return instance.start()

    yield make
    for instance in made:
        if instance.process is not None and instance.process.poll() is None:
            instance.process.send_signal(signal.SIGCONT)
        instance.stop()


def test_a_task_whose_work_committed_is_not_run_again(instances):
    # The consumer (a) sends the task to b, which runs it and commits; a is
    # frozen before it acknowledges (as if it had died just then). Once
    # the lease expires, c delivers the task again: it finds the work
    # recorded with b's commit, and acknowledges it without running it.
    b = instances("b", task_consumer="off")
    a = instances("a", task_url=f"http://127.0.0.1:{b.port}")
    task_id = queue(b, "committed-once", sleep=1)
    wait_for(lambda: counter(b, "task.committed-once.started") == 1, timeout=20,
             message="b running the task for a")
    a.process.send_signal(signal.SIGSTOP)
    wait_for(lambda: counter(b, "task.committed-once.committed") == 1, timeout=20,
             message="b committing the task's work")
    assert status(b, task_id)["state"] == "running"  # a never acknowledged
    c = instances("c")
    done = settled(c, task_id, "done", timeout=30)
    assert done["attempts"] == 2
    assert runs(c)["committed-once"] == 1
    assert counter(c, "task.committed-once.started") == 0
    assert "was already done" in c.log()
    a.process.send_signal(signal.SIGCONT)


def test_instances_sharing_a_queue_run_each_task_once(instances):
    first = instances("first")
    second = instances("second")
    tokens = [f"shared-{n}" for n in range(16)]
    ids = [queue(first, token, sleep=0.2) for token in tokens]
    for task_id in ids:
        settled(first, task_id, "done", timeout=60)
    assert runs(first) == {**runs(first), **dict.fromkeys(tokens, 1)}
    # One request per task (a ConflictError between the two instances'
    # writes is retried within it, as Zope retries any request), and both
    # instances took some.
    ran = [instance.access_log().count("task-job?sleep=0.2&token=shared-")
           for instance in (first, second)]
    assert sum(ran) == len(tokens) and all(ran), ran


def test_the_zodbs_record_of_done_tasks_is_pruned_by_the_housekeeping(make_zope):
    # Kept briefly (done and dead tasks 1 s, leases 1 s: the record 3 s,
    # in slices of 10 s), the housekeeping (every second, then) forgets
    # the record, and the status, of a done task.
    zope = make_zope(product_config={**CONFIG, "task_keep_done": "1",
                                     "task_keep_dead": "1", "task_lease": "1"})
    task_id = queue(zope, "recorded")
    settled(zope, task_id, "done")
    assert task_id in json.loads(zope.get("/@@task-done-records")[1])
    wait_for(lambda: json.loads(zope.get("/@@task-done-records")[1]) == [],
             timeout=40, interval=0.5, message="the record pruned")
    assert status(zope, task_id) is None
    assert "forgot 1 record(s) of background tasks done long ago" in zope.log()


def test_a_task_cut_by_sigkill_runs_again_after_the_restart(make_zope):
    zope = make_zope(threads=3, product_config=CONFIG)
    task_id = queue(zope, "killed", sleep_once=60)
    wait_for(lambda: counter(zope, "task.killed.started") == 1, timeout=20,
             message="the task running")
    zope.stop(sig=signal.SIGKILL)
    # The same database and queue: the task still waits, leased to the
    # dead process; once its lease (2 s) has expired, the restarted
    # instance runs it again, to the end this time (it sleeps once only).
    zope.start()
    done = settled(zope, task_id, "done", timeout=30)
    assert done["attempts"] == 2
    assert runs(zope)["killed"] == 1  # the first run committed nothing


def metrics(zope, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    status, _, body = zope.request(f"/@@futures-metrics?{query}", headers=zope.admin_headers())
    assert status == 200
    return body.decode()


def test_the_queues_figures_are_in_the_metrics_and_the_control_panel(zope):
    settled(zope, queue(zope, "counted"), "done")
    dead = settled(zope, queue(zope, "buried", path="/no-such-page"), "dead")
    data = json.loads(metrics(zope))["tasks"]
    assert data["unreachable"] is None
    default = data["queues"]["default"]
    assert default["done"] >= 1 and default["dead"] >= 1
    assert data["consumer"]["concurrency"] == 1
    assert data["consumer"]["settled"]["default"]["done"] >= 1
    assert data["consumer"]["durations"]["default"]["count"] >= 2
    text = metrics(zope, format="prometheus")
    assert 'collective_futures_tasks{queue="default",state="dead"} ' in text
    assert re.search(r"^collective_futures_tasks_up 1\.0$", text, re.M)
    # prometheus_client 0.26 writes the labels in name order.
    assert any(line.startswith("collective_futures_tasks_settled_total{")
               and 'queue="default"' in line and 'outcome="done"' in line
               for line in text.splitlines())
    assert 'collective_futures_task_duration_seconds_count{queue="default"} ' in text
    status, _, body = zope.request("/Control_Panel/manage_futures",
                                   headers=zope.admin_headers())
    page = body.decode()
    assert status == 200 and "Background tasks" in page and dead["id"] in page
    # The last error (a page of Zope's, with its markup) is shown escaped.
    assert "<" in dead["last_error"] and dead["last_error"][:60] not in page


def test_the_control_panel_does_not_show_the_tasks_secret(make_zope):
    secret = "do-not-show-" + "s" * 30
    zope = make_zope(product_config={"task_secret": secret, "metrics_token": "m" * 20})
    status, _, body = zope.request("/Control_Panel/manage_futures",
                                   headers=zope.admin_headers())
    assert status == 200
    page = body.decode()
    assert "task_backend" in page  # the control: the settings are listed
    assert secret not in page and "m" * 20 not in page


def test_a_periodic_task_fires_once_per_slot_with_two_instances(make_zope, tmp_path):
    # Two consuming instances sharing one queue, each with the same
    # periodic task every 2 s: each slot's task is added by both, kept
    # once, run once.
    import sqlite3
    shared = tmp_path / "periodic.db"
    config = {**CONFIG, "task_backend": f"sqlite:{shared}",
              "task_periodic.tick": "@every 2 /@@task-job?token=tick"}
    instances = (make_zope(product_config=config), make_zope(product_config=config))

    def requests():
        return sum(zope.access_log().count("task-job?token=tick") for zope in instances)

    wait_for(lambda: requests() >= 4, timeout=30, message="four slots run")
    for zope in instances:
        zope.stop()
    # closing(): a connection's own "with" commits but does not close it
    # (Python 3.13 warns about one left to the garbage collector).
    with contextlib.closing(sqlite3.connect(str(shared))) as db:
        rows = db.execute("SELECT eta, state FROM tasks WHERE request LIKE "
                          "'%token=tick%'").fetchall()
    slots = [eta for eta, _ in rows]
    assert len(slots) == len(set(slots)) >= 4  # one task per slot
    assert all(eta % 2 == 0 for eta in slots)  # the slots of @every 2
    done = sum(state == "done" for _, state in rows)
    running = sum(state == "running" for _, state in rows)
    # Each slot's task requested once (one may have been in flight at the
    # stop, its request logged or not).
    assert done <= requests() <= done + running


def test_a_periodic_task_declared_in_zcml_fires_and_zope_conf_can_switch_it_off(make_zope):
    # tests/futures_periodic declares <futures:periodic name="zcml-tick"
    # schedule="@every 2">; an instance whose zope.conf says
    # task_periodic.zcml-tick off runs it never (the control: the first
    # instance, which says nothing, runs it).
    packages = ("futures_testapp", "futures_periodic")
    on = make_zope(product_config=CONFIG, packages=packages)
    off = make_zope(product_config={**CONFIG, "task_periodic.zcml-tick": "off"},
                    packages=packages)
    wait_for(lambda: on.access_log().count("task-job?token=zcml-tick") >= 2,
             timeout=30, message="two slots of the ZCML periodic task run")
    assert off.access_log().count("task-job?token=zcml-tick") == 0


def dead_letter_action(zope, headers=None, method="POST", **form):
    body = urllib.parse.urlencode(form).encode()
    status, response_headers, _ = zope.request(
        "/Control_Panel/manage_futures_dead_letters" + ("" if method == "POST" else "?" + body.decode()),
        method=method, body=body if method == "POST" else None,
        headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})
    return status


def test_a_dead_letter_is_requeued_or_deleted_from_the_futures_tab(zope):
    import re
    revived = settled(zope, queue(zope, "revived", fail_first=1, attempts=1), "dead")
    gone = settled(zope, queue(zope, "gone", path="/no-such-page", attempts=1), "dead")
    code, _, body = zope.request("/Control_Panel/manage_futures", headers=zope.admin_headers())
    assert code == 200
    token = re.search(r'name="token" value="([0-9a-f]{64})"', body.decode()).group(1)
    admin = zope.admin_headers()
    # Refused: no token, a wrong one, a GET (a link or an image of another
    # page), anonymous.
    assert dead_letter_action(zope, admin, task_id=revived["id"], action="requeue") == 403
    assert dead_letter_action(zope, admin, task_id=revived["id"], action="requeue",
                              token="0" * 64) == 403
    assert dead_letter_action(zope, admin, method="GET", task_id=revived["id"],
                              action="requeue", token=token) == 403
    assert dead_letter_action(zope, task_id=revived["id"], action="requeue",
                              token=token) == 401
    assert status(zope, revived["id"])["state"] == "dead"
    # Done as the tab's form does it.
    assert dead_letter_action(zope, admin, task_id=revived["id"], action="requeue",
                              token=token) == 302
    again = settled(zope, revived["id"], "done")
    assert again["attempts"] == 1  # counted again from 0
    assert dead_letter_action(zope, admin, task_id=gone["id"], action="delete",
                              token=token) == 302
    assert status(zope, gone["id"]) is None
    # Not a dead task (any more): a clear 400.
    assert dead_letter_action(zope, admin, task_id=gone["id"], action="delete",
                              token=token) == 400


def test_plain_pages_stay_fast_during_a_flood_of_ten_thousand_tasks(make_zope):
    # 10,000 tasks queued in one transaction; the consumer (one at a time,
    # one of the three worker threads) works through them while a plain
    # page is asked for. A generous bound: a page that waited for the
    # flood would wait minutes.
    zope = make_zope(threads=3, product_config=CONFIG)
    code, body = zope.get("/@@queue-many?n=10000&path=/@@task-noop", timeout=120)
    assert (code, body) == (200, "10000")
    wait_for(lambda: zope.access_log().count("task-noop?n=") >= 50, timeout=30,
             message="the flood being consumed")
    probes = []
    for _ in range(20):
        start = time.monotonic()
        assert zope.get("/@@plain") == (200, "plain page")
        probes.append(time.monotonic() - start)
    assert max(probes) < 1.0, probes
    data = json.loads(metrics(zope))["tasks"]
    assert data["consumer"]["running"] <= 1
    assert data["queues"]["default"]["queued"] > 5000  # the flood is still there
