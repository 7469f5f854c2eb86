"""What makes a task's request trusted: an HMAC the consumer computes with
a secret only the instances know, over everything that says what the
request may do (the task, its lease, its method and path, its user, an
expiry).

Runs on: the consumer's threads (signing) and the Zope worker publishing
a task's request (verifying). Pure: no Zope, no I/O.

A visitor can send the same header names; without the secret the
signature cannot match, and a captured one is bound to one task's lease,
method and path, and expires with the lease.
"""

import hashlib
import hmac
import json
import time
import urllib.parse


#: The request headers of a task's request (the ``X-Task-Id`` name is
#: collective.taskqueue's, which views ported from it read).
TASK_ID = "X-Task-Id"
LEASE = "X-Futures-Task-Lease"
USER = "X-Futures-Task-User"
EXPIRES = "X-Futures-Task-Expires"
SIGNATURE = "X-Futures-Task-Signature"

#: The same, as WSGI environ keys.
ENVIRON_KEYS = {name: "HTTP_" + name.upper().replace("-", "_")
                for name in (TASK_ID, LEASE, USER, EXPIRES, SIGNATURE)}

#: Secrets shorter than this are refused (settings): guessable.
MIN_SECRET_LENGTH = 32


class InvalidSignature(Exception):
    """The request claims to be a task's and is not (the message says
    why, for the log)."""


def _message(task_id, lease_id, method, path, query, user, expires):
    user = user or ""
    # Length-prefixed fields: no two different field lists give one string
    # (nor a path and its query: "/a?b" is not "/a%3Fb").
    fields = (task_id, lease_id, method.upper(), path, query, user, str(int(expires)))
    return "".join(f"{len(field)}:{field};" for field in fields).encode("utf-8")


def sign(secret, task_id, lease_id, method, path, query, user, expires):
    """The signature (hex) of a task's request: ``path`` as PATH_INFO
    (SCRIPT_NAME before it) and ``query`` as QUERY_STRING will be."""
    return hmac.new(_secret_bytes(secret), _message(
        task_id, lease_id, method, path, query, user, expires), hashlib.sha256).hexdigest()


def as_received(path):
    """A task's path (with its query) as the server hands it to Zope:
    (PATH_INFO percent-decoded, its bytes as latin-1 (PEP 3333), the
    QUERY_STRING as sent)."""
    path, _, query = path.partition("?")
    return urllib.parse.unquote_to_bytes(path).decode("latin-1"), query


def user_string(user):
    """What is signed (and sent) of a task's user record: the user folder
    that holds the user and its id, both, so that a user of one folder
    is never taken for a namesake of another; "" for none."""
    if not user:
        return ""
    return json.dumps([user.get("folder") or "", user["id"]])


def user_record(text):
    """The (folder, id) of ``user_string``'s output, or None."""
    if not text:
        return None
    try:
        folder, user_id = json.loads(text)
    except (ValueError, TypeError):
        raise InvalidSignature("a malformed user") from None
    if not isinstance(folder, str) or not isinstance(user_id, str) or not user_id:
        raise InvalidSignature("a malformed user")
    return folder, user_id


def headers(secret, task, lease_id, expires):
    """The headers that make ``task``'s request trusted until ``expires``."""
    user = user_string(task.get("user"))
    signed = {
        TASK_ID: task["id"], LEASE: lease_id, EXPIRES: str(int(expires)),
        SIGNATURE: sign(secret, task["id"], lease_id, task["method"],
                        *as_received(task["path"]), user, expires),
    }
    if user:
        # Percent-encoded UTF-8: a header value is latin-1, a user id is not.
        signed[USER] = urllib.parse.quote(user, safe="")
    return signed


def verify(secret, environ, now=None):
    """The task's (id, lease id, (user folder, user id) or None) if
    ``environ`` (a WSGI environ) carries a valid, unexpired signature for
    its method and path; None if it carries no task header at all;
    InvalidSignature if it carries any and they do not verify."""
    values = {name: environ.get(key) for name, key in ENVIRON_KEYS.items()}
    if all(value is None for value in values.values()):
        return None
    # Any task header, even empty, makes the request claim to be a task's.
    task_id, lease_id = values[TASK_ID], values[LEASE]
    expires, signature = values[EXPIRES], values[SIGNATURE]
    if not (task_id and lease_id and expires and signature):
        raise InvalidSignature("a task header without the others")
    try:
        expires_at = int(expires)
    except ValueError:
        raise InvalidSignature("a malformed expiry") from None
    now = time.time() if now is None else now
    # The whole path the client asked for: a prefix a middleware moved to
    # SCRIPT_NAME is part of it.
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING", "")
    user = urllib.parse.unquote(values[USER]) if values[USER] else None
    expected = sign(secret, task_id, lease_id, environ.get("REQUEST_METHOD", "GET"),
                    path, query, user, expires_at)
    # Constant time: the comparison tells nothing of how much matched.
    if not hmac.compare_digest(expected, signature):
        raise InvalidSignature("the signature does not match")
    if expires_at < now:
        raise InvalidSignature("the signature has expired")
    return task_id, lease_id, user_record(user)


def _secret_bytes(secret):
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
