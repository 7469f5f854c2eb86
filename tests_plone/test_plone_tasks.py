"""Background tasks on a real Plone 6 site over HTTP: a member's task runs
as that member (the add-on's PAS plugin, from the signed request) and its
writes pass plone.protect because the request is trusted, with the check
still on for everyone else."""

import base64
import json

import pytest

from ploneinstance import PloneInstance
from slow_upstream import SlowUpstream
from waiting import wait_for


pytestmark = pytest.mark.functional

JANE = "Basic " + base64.b64encode(b"jane:jane-Secret-1").decode()


@pytest.fixture(scope="module")
def plone(tmp_path_factory):
    upstream = SlowUpstream(delay=0.1).start()
    instance = PloneInstance(tmp_path_factory.mktemp("plone-tasks"),
                             feed_url=f"{upstream.url}feed.xml", threads=3,
                             product_config={"task_consumer": "on", "task_poll": "0.1",
                                             "task_backoff": "0.05"})
    instance.create().start()
    yield instance
    instance.stop()
    upstream.stop()


def get(plone, path, **headers):
    status, _, body = plone.request(path, headers=plone.host_headers(**headers), timeout=60)
    return status, body.decode("utf-8", "replace")


def settled(plone, task_id):
    def state():
        status, body = get(plone, f"/Plone/@@plone-task-state?id={task_id}")
        found = json.loads(body) if status == 200 else None
        return found if found and found["state"] in ("done", "dead") else None
    return wait_for(state, timeout=30, interval=0.1, message=f"task {task_id} settled")


def test_the_profile_installs_the_task_user_plugin(plone):
    status, body = get(plone, "/Plone/acl_users/collective_futures_tasks/getId",
                       Authorization="Basic " + base64.b64encode(b"admin:secret").decode())
    assert (status, body) == (200, "collective_futures_tasks")


def test_a_members_task_creates_content_as_that_member(plone):
    status, task_id = get(plone, "/Plone/work/@@plone-queue-task?task=plone-task-create"
                                 "&title=Report", Authorization=JANE)
    assert status == 200, task_id
    done = settled(plone, task_id)
    assert done["state"] == "done", done
    status, body = get(plone, "/Plone/work/@@plone-doc-info?id=report", Authorization=JANE)
    assert json.loads(body) == {"creators": ["jane"], "owner": "jane"}


def test_plone_protect_stays_on_for_requests_that_are_not_tasks(plone):
    # The control: jane herself, the same GET without a token: the write
    # is refused (plone.protect aborts it), so the task's token is what
    # let its write through.
    status, _ = get(plone, "/Plone/work/@@plone-task-create?title=Direct", Authorization=JANE)
    status, body = get(plone, "/Plone/work/@@plone-doc-info?id=direct", Authorization=JANE)
    assert json.loads(body) is None


def test_a_task_runs_as_whoever_queued_it(plone):
    ids = {
        "as-jane": get(plone, "/Plone/@@plone-queue-task?task=plone-task-whoami"
                              "&token=as-jane", Authorization=JANE)[1],
        "as-anonymous": get(plone, "/Plone/@@plone-queue-task?task=plone-task-whoami"
                                   "&token=as-anonymous")[1],
    }
    for task_id in ids.values():
        assert settled(plone, task_id)["state"] == "done"
    users = json.loads(get(plone, "/Plone/@@plone-task-users")[1])
    assert users == {"as-jane": "jane", "as-anonymous": "Anonymous User"}


def test_a_task_runs_as_the_user_trusted_code_names(plone):
    ids = {
        # Queued by Anonymous, run as jane; queued by jane, run as Anonymous.
        "named-jane": get(plone, "/Plone/@@plone-queue-task?task=plone-task-whoami"
                                 "&token=named-jane&run_as=jane")[1],
        "named-anonymous": get(plone, "/Plone/@@plone-queue-task?task=plone-task-whoami"
                                      "&token=named-anonymous&run_as=anonymous",
                               Authorization=JANE)[1],
    }
    # A member object (plone.api.user.get) names its user too.
    ids["member-jane"] = get(plone, "/Plone/@@plone-queue-task?task=plone-task-whoami"
                                    "&token=member-jane&run_as=jane&as_member=1")[1]
    for task_id in ids.values():
        assert settled(plone, task_id)["state"] == "done"
    users = json.loads(get(plone, "/Plone/@@plone-task-users")[1])
    assert (users["named-jane"], users["named-anonymous"], users["member-jane"]) == (
        "jane", "Anonymous User", "jane")
    # A task outside the site: its user folder is not jane's, so it could
    # not run as her: refused at add().
    status, _ = get(plone, "/Plone/@@plone-queue-task?path=/elsewhere/@@x&token=x"
                           "&run_as=jane")
    assert status == 500
    assert ("run_as: 'jane': /Plone/acl_users is not the user folder of "
            "/elsewhere/@@x" in plone.log())
    # The Zope root's admin is not a user of the site's user folder: the
    # site finds no such user, and add() fails rather than run the task as
    # someone else.
    status, _ = get(plone, "/Plone/@@plone-queue-task?task=plone-task-whoami"
                           "&token=named-admin&run_as=admin")
    assert status == 500
    assert "run_as: no user 'admin' in /Plone/acl_users" in plone.log()


def test_a_tasks_status_for_rest_api_clients_is_for_its_user(plone):
    status, task_id = get(plone, "/Plone/@@plone-queue-task?task=plone-task-whoami"
                                 "&token=rest", Authorization=JANE)
    assert status == 200
    settled(plone, task_id)

    def rest(**headers):
        code, body = get(plone, f"/Plone/@futures-task/{task_id}",
                         Accept="application/json", **headers)
        return code, (json.loads(body) if body else None)

    code, data = rest(Authorization=JANE)
    assert code == 200 and data["state"] == "done" and data["id"] == task_id
    assert rest(Authorization="Basic " + base64.b64encode(b"admin:secret").decode())[0] == 200
    # Anyone else: as if there were no such task.
    assert rest()[0] == 404
    assert get(plone, "/Plone/@futures-task/" + "0" * 32, Accept="application/json",
               Authorization=JANE)[0] == 404


def test_a_forged_task_request_is_refused_and_writes_nothing(plone):
    # A visitor sending task headers, with a user of the site in them,
    # gets a 403 before anything runs: no page is created, whoever it names.
    import time
    user = '["/Plone/acl_users", "jane"]'
    forged = {"X-Task-Id": "f" * 32, "X-Futures-Task-Lease": "l",
              "X-Futures-Task-Expires": str(int(time.time()) + 60),
              "X-Futures-Task-Signature": "ab" * 32,
              "X-Futures-Task-User": user}
    status, _ = get(plone, "/Plone/work/@@plone-task-create?title=Forged", **forged)
    assert status == 403
    status, body = get(plone, "/Plone/work/@@plone-doc-info?id=forged", Authorization=JANE)
    assert json.loads(body) is None
    assert "refused a request claiming to be a task's" in plone.log()


def test_only_a_pas_with_the_task_plugin_active_authenticates_tasks():
    # Pure code with stand-ins: the PAS plugin registry's answers.
    from Products.PluggableAuthService.interfaces.plugins import (
        IAuthenticationPlugin, IExtractionPlugin)
    from collective.futures import taskqueue

    class Registry:
        def __init__(self, active):
            self.active = active

        def listPluginIds(self, interface):
            return [taskqueue.TASK_USER_PLUGIN] if interface in self.active else []

    class Folder:
        def __init__(self, ids, active):
            self.ids, self.plugins = ids, Registry(active)

        def objectIds(self):
            return self.ids

    both = (IExtractionPlugin, IAuthenticationPlugin)
    assert taskqueue._authenticates_tasks(Folder([taskqueue.TASK_USER_PLUGIN], both))
    assert not taskqueue._authenticates_tasks(
        Folder([taskqueue.TASK_USER_PLUGIN], (IExtractionPlugin,)))  # deactivated
    assert not taskqueue._authenticates_tasks(Folder([], both))  # not there
    plain = Folder([taskqueue.TASK_USER_PLUGIN], both)
    del plain.plugins  # a plain user folder has no registry
    assert not taskqueue._authenticates_tasks(plain)
