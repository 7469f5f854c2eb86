"""What makes a task's request trusted (collective.futures.tasks.signature):
every field it is signed over, tampered with, is refused."""

import pytest

from collective.futures.tasks import signature
from collective.futures.tasks.model import new_task
from collective.futures.tasks.signature import InvalidSignature, verify


SECRET = "s" * 40
T0 = 1_800_000_000.0


def environ_for(task, lease_id="lease-1", expires=T0 + 60, secret=SECRET, **changes):
    """The WSGI environ waitress gives Zope for the task's request."""
    path, query = signature.as_received(task["path"])
    environ = {"REQUEST_METHOD": task["method"], "PATH_INFO": path, "QUERY_STRING": query}
    for name, value in signature.headers(secret, task, lease_id, expires).items():
        environ[signature.ENVIRON_KEYS[name]] = value
    environ.update(changes)
    return environ


def test_a_signed_request_verifies_as_its_task_lease_and_user():
    task = new_task("/Plone/f%C3%B6lder/@@job?x=1&y=%20", queue="default", method="POST",
                    user={"id": "jäne@example.org", "folder": "/Plone/acl_users"})
    assert verify(SECRET, environ_for(task), now=T0) == (
        task["id"], "lease-1", ("/Plone/acl_users", "jäne@example.org"))
    anonymous = new_task("/Plone/@@job", queue="default")
    assert verify(SECRET, environ_for(anonymous), now=T0) == (anonymous["id"], "lease-1", None)


def test_a_request_without_task_headers_is_no_task():
    assert verify(SECRET, {"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, now=T0) is None


@pytest.mark.parametrize("change, why", [
    ({"PATH_INFO": "/Plone/other/@@job"}, "does not match"),
    ({"QUERY_STRING": "x=2"}, "does not match"),
    ({"REQUEST_METHOD": "DELETE"}, "does not match"),
    ({"HTTP_X_FUTURES_TASK_USER": "%5B%22%2Facl_users%22%2C%20%22admin%22%5D"},
     "does not match"),
    ({"HTTP_X_FUTURES_TASK_USER": "admin"}, "does not match"),
    ({"HTTP_X_FUTURES_TASK_LEASE": "lease-2"}, "does not match"),
    ({"HTTP_X_TASK_ID": "0" * 32}, "does not match"),
    ({"HTTP_X_FUTURES_TASK_EXPIRES": str(int(T0 + 3600))}, "does not match"),
    ({"HTTP_X_FUTURES_TASK_EXPIRES": "soon"}, "malformed expiry"),
    ({"HTTP_X_FUTURES_TASK_SIGNATURE": ""}, "without the others"),
])
def test_a_tampered_request_is_refused(change, why):
    task = new_task("/Plone/@@job", queue="default", user={"id": "jane"})
    with pytest.raises(InvalidSignature, match=why):
        verify(SECRET, environ_for(task, **change), now=T0)


def test_a_forged_signature_and_an_expired_one_are_refused():
    task = new_task("/Plone/@@job", queue="default", user={"id": "admin"})
    # Signed with another secret: what anyone without the secret can do.
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(SECRET, environ_for(task, secret="x" * 40), now=T0)
    with pytest.raises(InvalidSignature, match="expired"):
        verify(SECRET, environ_for(task, expires=T0 - 1), now=T0)
    # A header alone (someone trying the name) is refused, not ignored;
    # an empty one too.
    with pytest.raises(InvalidSignature, match="without the others"):
        verify(SECRET, {"HTTP_X_TASK_ID": task["id"]}, now=T0)
    with pytest.raises(InvalidSignature, match="without the others"):
        verify(SECRET, {"HTTP_X_TASK_ID": ""}, now=T0)


def test_a_path_and_its_query_are_signed_apart():
    # "/a?b=1" and "/a%3Fb=1" are two requests; one's signature is not the
    # other's.
    task = new_task("/Plone/a?b=1", queue="default")
    environ = environ_for(task)
    assert verify(SECRET, environ, now=T0)
    moved = dict(environ, PATH_INFO="/Plone/a?b=1", QUERY_STRING="")
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(SECRET, moved, now=T0)


def test_a_prefix_moved_to_script_name_is_part_of_the_path():
    task = new_task("/prefix/Plone/@@job", queue="default")
    environ = environ_for(task)
    split = dict(environ, SCRIPT_NAME="/prefix", PATH_INFO="/Plone/@@job")
    assert verify(SECRET, split, now=T0)[0] == task["id"]
