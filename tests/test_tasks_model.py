"""What a task is (collective.futures.tasks.model): every argument checked
when the task is made, a bad one named in the error."""

import pytest

from collective.futures.exceptions import TaskQueueError
from collective.futures.tasks.model import FIELDS, new_task, retry_delay, target


T0 = 1_800_000_000.0


def test_a_new_task_has_every_field_and_plain_data():
    task = new_task("/Plone/folder/@@convert?size=2", queue="default", method="post",
                    headers={"X-Kind": "pdf"}, payload="é", now=T0)
    assert tuple(task) == FIELDS
    assert task["method"] == "POST" and task["path"] == "/Plone/folder/@@convert?size=2"
    assert task["headers"] == [["X-Kind", "pdf"]] and task["payload"] == "é".encode()
    assert task["eta"] == task["created"] == T0 and task["attempts"] == 0
    assert len(task["id"]) == 32 and task["id"] != new_task("/x", queue="q")["id"]


def test_params_are_appended_to_the_query():
    assert target("/Plone/@@job?a=1", {"b": "x y", "flag": True, "n": [1, 2]}) == \
        "/Plone/@@job?a=1&b=x+y&flag=true&n=1&n=2"
    assert target("/Plone/@@job") == "/Plone/@@job"


@pytest.mark.parametrize("url, message", [
    ("https://evil.example/steal", "absolute URL"),
    ("//evil.example/steal", "absolute URL"),
    ("relative/@@job", "not a path from the root"),
    ("/Plone/@@job\r\nX-Injected: 1", "control characters"),
    (b"/Plone/@@job", "a path is a str"),
    (None, "a path is a str"),
])
def test_a_url_that_is_not_a_path_of_this_site_is_refused(url, message):
    with pytest.raises(TaskQueueError, match=f"url: .*{message}|url: {message}"):
        new_task(url, queue="default")


@pytest.mark.parametrize("kwargs, named", [
    ({"queue": "Not A Queue"}, "queue"),
    ({"queue": ""}, "queue"),
    ({"method": "TRACE"}, "method"),
    ({"payload": {"a": 1}}, "payload"),
    ({"eta": float("nan")}, "eta"),
    ({"eta": "tomorrow"}, "eta"),
    ({"max_attempts": 0}, "attempts"),
    ({"max_attempts": True}, "attempts"),
    ({"backoff": -1}, "backoff"),
    ({"dedup": ""}, "dedup"),
    ({"user": "admin"}, "user"),
    ({"headers": {"X-A": 1}}, "headers"),
    ({"headers": {"Bad Name": "v"}}, "headers"),
    ({"headers": {"X-A": "v\r\nX-B: w"}}, "headers"),
    ({"headers": 42}, "headers"),
])
def test_a_bad_argument_is_named(kwargs, named):
    arguments = {"queue": "default", **kwargs}
    with pytest.raises(TaskQueueError, match=f"^{named}: "):
        new_task("/Plone/@@job", **arguments)
    # The control: the same call without the bad argument is fine.
    good = {"queue": "default"}
    assert new_task("/Plone/@@job", **good)["queue"] == "default"


def test_params_that_cannot_be_a_query_are_refused():
    with pytest.raises(TaskQueueError, match=r"^params: 'o': object cannot"):
        target("/x", {"o": object()})
    with pytest.raises(TaskQueueError, match=r"^params: a mapping"):
        target("/x", ["a", "b"])


def test_headers_that_say_who_the_request_is_are_not_carried():
    task = new_task("/x", queue="q", headers=[
        ("Authorization", "Basic YWRtaW46c2VjcmV0"), ("Cookie", "__ac=x"),
        ("Host", "evil"), ("Accept-Language", "fi")])
    assert task["headers"] == [["Accept-Language", "fi"]]


def test_the_retry_delay_grows_exponentially_with_full_jitter():
    task = new_task("/x", queue="q", backoff=2.0)
    ceilings = []
    for attempts in (1, 2, 3, 4, 20):
        task["attempts"] = attempts
        ceilings.append(retry_delay(task, maximum=60.0, rng=lambda: 1.0))
        assert retry_delay(task, maximum=60.0, rng=lambda: 0.0) == 0.0
    assert ceilings == [2.0, 4.0, 8.0, 16.0, 60.0]
    task["attempts"] = 3
    assert retry_delay(task, rng=lambda: 0.25) == 2.0


def test_characters_a_url_path_cannot_carry_are_encoded():
    # Valid Zope ids: a '#', a space, a letter outside ASCII.
    assert target("/site/report#1/@@convert") == "/site/report%231/@@convert"
    assert target("/site/my doc/@@x?a=1") == "/site/my%20doc/@@x?a=1"
    assert target("/site/földer/@@x") == "/site/f%C3%B6lder/@@x"
    # Already encoded: kept as given.
    assert target("/site/my%20doc/@@x") == "/site/my%20doc/@@x"


def test_a_header_value_that_http_cannot_carry_is_refused():
    with pytest.raises(TaskQueueError, match="^headers: 'X-Name': an HTTP header value is latin-1"):
        new_task("/x", queue="q", headers={"X-Name": "Jänë ☃"})


def test_run_as_must_be_a_user_id_a_user_or_anonymous():
    from collective.futures import taskqueue
    assert taskqueue._named_user(taskqueue.ANONYMOUS, "/Plone/@@x") is None
    for wrong in (123, object(), b"jane"):
        with pytest.raises(TaskQueueError, match=r"^run_as: a user id \(str\), a user "
                                                 r"object or ANONYMOUS"):
            taskqueue._named_user(wrong, "/Plone/@@x")

