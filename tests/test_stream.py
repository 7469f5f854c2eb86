"""stream.py: AsyncWorkerStreamIterator, as a view makes it (the rest is
exercised by tests/test_streams.py against a real Zope, and by
test_server_streaming.py for the hand-off)."""

import pytest

from collective import futures


def fn(*args):
    return args


def test_a_stream_cannot_be_shared(request_):
    with pytest.raises(TypeError, match="cannot be shared"):
        futures.AsyncWorkerStreamIterator(
            futures.promise(fn, shared=True), request_)
    with pytest.raises(TypeError, match="request must be the Zope request"):
        futures.AsyncWorkerStreamIterator(fn, object())
