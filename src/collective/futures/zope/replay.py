"""Wait mode replays a request through ``request.retry()``, which rewinds
``request.stdin``: make sure it can.

Runs on: the Zope worker, at ``IPubStart``, before Zope reads the body.
"""

import tempfile


def make_body_replayable(request, chunk=1 << 16):
    """Wait mode replays through ``request.retry()``, which rewinds
    ``request.stdin``; some servers (gunicorn) hand over a body that cannot
    seek. Copy such a body, before Zope reads it, into a spooled file
    (memory up to 1 MiB, then a temporary file). Zope's own ConflictError
    retries need this too."""
    stdin = request.stdin
    seekable = getattr(stdin, "seekable", None)
    if stdin is None or (seekable is not None and seekable()):
        return
    length = request.environ.get("CONTENT_LENGTH")
    remaining = int(length) if length and length.isdigit() else None
    copy = tempfile.SpooledTemporaryFile(max_size=1 << 20)
    while remaining is None or remaining > 0:
        data = stdin.read(chunk if remaining is None else min(chunk, remaining))
        if not data:
            break
        copy.write(data)
        if remaining is not None:
            remaining -= len(data)
    copy.seek(0)
    request.stdin = copy
