"""zope/replay.py: a body that cannot seek is copied before Zope reads it,
so that wait mode's request.retry() can read it again."""

import io

import pytest

from collective.futures.zope.replay import make_body_replayable


class Stream:
    """A request body as some servers hand it over: read() only, no seek.
    ``limit`` plays a socket: reading past it would block, so it fails."""

    def __init__(self, data, seekable=False, limit=None, has_seekable=True):
        self._data = io.BytesIO(data)
        self._seekable = seekable
        self.limit = limit
        self.reads = []
        if not has_seekable:
            self.seekable = None

    def seekable(self):
        return self._seekable

    def read(self, size=-1):
        self.reads.append(size)
        if self.limit is not None:
            assert size != -1, "read everything of a socket: blocks"
            assert self._data.tell() + size <= self.limit, "read past the body"
        return self._data.read(size)

    def close(self):
        self._data.close()


class Request:
    made = []

    def __init__(self, stdin, length=None):
        self.stdin = stdin
        self.environ = {} if length is None else {"CONTENT_LENGTH": length}
        self.made.append(self)


@pytest.fixture(autouse=True)
def close_copies():
    """The copy belongs to the request, which Zope closes at its end."""
    yield
    while Request.made:
        stdin = Request.made.pop().stdin
        if stdin is not None:
            stdin.close()


def replayed(request):
    make_body_replayable(request)
    first = request.stdin.read()
    request.stdin.seek(0)
    assert request.stdin.read() == first  # what retry() relies on
    request.stdin.seek(0)
    return first


def test_a_body_with_a_content_length_is_copied_and_no_more_is_read():
    data = b"a=1&b=2"
    stream = Stream(data + b"NEXT REQUEST", limit=len(data))
    request = Request(stream, str(len(data)))
    assert replayed(request) == data
    assert request.stdin is not stream
    assert all(size > 0 for size in stream.reads)


def test_a_body_without_a_content_length_is_read_to_its_end():
    stream = Stream(b"x" * 100_000)
    request = Request(stream)
    assert replayed(request) == b"x" * 100_000
    assert len(stream.reads) == 3  # two chunks of 64 KiB, then the end


@pytest.mark.parametrize("length", ["", "abc", "-5", " 12"])
def test_a_content_length_that_is_not_a_number_reads_to_the_end(length):
    request = Request(Stream(b"body"), length)
    assert replayed(request) == b"body"


def test_a_body_over_one_mebibyte_spools_to_disk():
    data = bytes(range(256)) * (5 * 1024)  # 1.25 MiB
    request = Request(Stream(data), str(len(data)))
    assert replayed(request) == data
    # SpooledTemporaryFile's own flag: rolled over to a temporary file.
    assert request.stdin._rolled


def test_a_small_body_stays_in_memory():
    request = Request(Stream(b"small"), "5")
    replayed(request)
    assert not request.stdin._rolled


def test_a_short_body_is_copied_as_far_as_it_goes():
    # The client sent less than its Content-Length: no hang, no error.
    request = Request(Stream(b"only this"), "1000")
    assert replayed(request) == b"only this"


def test_a_stream_without_seekable_is_copied():
    stream = Stream(b"body", has_seekable=False)
    request = Request(stream, "4")
    assert replayed(request) == b"body" and request.stdin is not stream


def test_a_seekable_body_is_left_alone():
    stream = Stream(b"body", seekable=True)
    request = Request(stream, "4")
    make_body_replayable(request)
    assert request.stdin is stream and stream.reads == []
    stdin = io.BytesIO(b"body")
    request = Request(stdin, "4")
    make_body_replayable(request)
    assert request.stdin is stdin and stdin.tell() == 0


def test_no_body_stream():
    request = Request(None, "10")
    make_body_replayable(request)
    assert request.stdin is None
