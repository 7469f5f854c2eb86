"""core/body.py: what a stream's fn returned, turned into status, headers
and byte chunks; the responses the server writes itself (500, 503, 504)."""

import asyncio
import io
import tempfile

import pytest

from collective.futures.core.body import (
    CHUNK_SIZE, Prepared, StreamResult, attachment, charset_of,
    error_prepared, merge_headers, prepare, status_line, unavailable)


VIEW = [("Content-Type", "text/plain; charset=utf-8"), ("X-View", "1")]


def header(prepared, name):
    values = [v for n, v in prepared.headers if n.lower() == name.lower()]
    assert len(values) <= 1, prepared.headers
    return values[0] if values else None


def body(prepared):
    try:
        return b"".join(prepared.chunks)
    finally:
        prepared.close()


# bytes, str, None

def test_bytes_get_a_content_length_and_keep_the_view_status_and_headers():
    prepared = prepare(b"hello", "202 Accepted", VIEW)
    assert prepared.status == "202 Accepted"
    assert header(prepared, "Content-Length") == "5"
    assert prepared.content_length == 5
    assert header(prepared, "X-View") == "1"
    assert body(prepared) == b"hello"


@pytest.mark.parametrize("data", [bytearray(b"abc"), memoryview(b"abc")])
def test_bytes_like(data):
    prepared = prepare(data, "200 OK", [])
    assert body(prepared) == b"abc" and prepared.content_length == 3


def test_str_is_encoded_with_the_charset_of_the_content_type():
    latin = prepare("café", "200 OK",
                    [("Content-Type", 'text/plain; charset="ISO-8859-1"')])
    assert body(latin) == "café".encode("latin-1")
    assert latin.content_length == 4
    utf8 = prepare("café", "200 OK", [("Content-Type", "text/plain")])
    assert body(utf8) == "café".encode() and utf8.content_length == 5


def test_charset_of():
    assert charset_of([("content-type", "text/html; Charset=koi8-r")]) == "koi8-r"
    assert charset_of([("Content-Type", "text/html; charset=")]) == "utf-8"
    assert charset_of([], default="ascii") == "ascii"


def test_none_is_an_empty_body():
    prepared = prepare(None, "204 No Content", [])
    assert prepared.content_length == 0
    assert list(prepared.chunks) == []  # no empty chunk either
    assert prepare(b"", "200 OK", []).content_length == 0


# files

def test_a_file_is_read_in_chunks_with_its_length_from_fstat(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"x" * 10 + b"y" * (CHUNK_SIZE + 5))
    fileobj = open(path, "rb")
    fileobj.seek(10)  # the length counts from where the file is
    prepared = prepare(fileobj, "200 OK", [])
    assert prepared.content_length == CHUNK_SIZE + 5
    chunks = list(prepared.chunks)
    assert [len(c) for c in chunks] == [CHUNK_SIZE, 5]
    assert b"".join(chunks) == b"y" * (CHUNK_SIZE + 5)
    prepared.close()
    assert fileobj.closed


def test_a_file_without_a_descriptor_has_no_content_length():
    fileobj = io.BytesIO(b"data")
    prepared = prepare(fileobj, "200 OK", [])
    assert prepared.content_length is None
    assert body(prepared) == b"data"
    assert fileobj.closed


def test_a_text_mode_file_fails_naming_binary_mode(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("text")
    with open(path) as fileobj:
        with pytest.raises(TypeError, match="binary mode"):
            list(prepare(fileobj, "200 OK", []).chunks)


@pytest.mark.parametrize("make", [
    lambda: tempfile.NamedTemporaryFile("w+"),
    lambda: tempfile.SpooledTemporaryFile(mode="w+"),
], ids=["NamedTemporaryFile", "SpooledTemporaryFile"])
def test_a_wrapped_text_file_is_refused_by_prepare_itself(make):
    # Text files behind a wrapper are no TextIOBase: asked of the file.
    with make() as fileobj:
        fileobj.write("text")
        fileobj.seek(0)
        with pytest.raises(TypeError, match="binary mode"):
            prepare(fileobj, "200 OK", [])


def test_a_wrapped_binary_file_is_sent():
    # The positive control: the same wrappers in binary mode are files.
    with tempfile.NamedTemporaryFile("w+b") as fileobj:
        fileobj.write(b"bytes")
        fileobj.seek(0)
        prepared = prepare(fileobj, "200 OK", [])
        assert b"".join(prepared.chunks) == b"bytes"
        assert ("Content-Length", "5") in prepared.headers


def test_a_file_like_object_returning_str_fails_at_its_first_chunk():
    # No mode to look at: found out when read.
    class Reader:
        def read(self, size):
            return "text"

    with pytest.raises(TypeError, match="open it in binary mode"):
        list(prepare(Reader(), "200 OK", []).chunks)


def test_a_text_mode_file_is_refused_by_prepare_itself(tmp_path):
    # Before any status or Content-Length is chosen: a stream gets the 500
    # other unsendable output gets, not a truncated 200.
    path = tmp_path / "data.txt"
    path.write_text("text")
    with open(path) as fileobj:
        with pytest.raises(TypeError, match="binary mode"):
            prepare(fileobj, "200 OK", [])


# iterables

def test_an_iterable_of_bytes_and_str_streams_without_a_length():
    prepared = prepare(iter(["é", b"b", b"", ""]), "200 OK",
                       [("Content-Type", "text/plain; charset=latin-1")])
    assert prepared.content_length is None
    assert list(prepared.chunks) == [b"\xe9", b"b"]  # empty chunks dropped


def test_an_iterable_is_closed():
    closed = []

    class Output:
        def __iter__(self):
            return iter([b"a"])

        def close(self):
            closed.append(True)

    prepared = prepare(Output(), "200 OK", [])
    assert body(prepared) == b"a"
    assert closed == [True]


def test_an_iterable_yielding_an_int_fails_naming_the_type():
    prepared = prepare([b"ok", 3], "200 OK", [])
    chunks = prepared.chunks
    assert next(chunks) == b"ok"
    with pytest.raises(TypeError, match="yielded int, not bytes"):
        next(chunks)


@pytest.mark.parametrize("result, name", [(42, "int"), (object(), "object"),
                                          (3.5, "float")])
def test_output_that_is_not_a_body_fails_naming_the_type(result, name):
    with pytest.raises(TypeError, match=f"fn returned {name}: return bytes"):
        prepare(result, "200 OK", [])


# async iterables

class AsyncOutput:
    """An async generator's stand-in: yields ``chunks``, records aclose."""

    def __init__(self, chunks=()):
        self.chunks = list(chunks)
        self.closed = 0

    def __aiter__(self):
        return self

    async def __anext__(self):
        if not self.chunks:
            raise StopAsyncIteration
        return self.chunks.pop(0)

    async def aclose(self):
        self.closed += 1


def drive(prepared):
    """Iterate an asynchronous Prepared on a loop of its own, then close it."""
    async def run():
        chunks = [chunk async for chunk in prepared.achunks]
        await prepared.aclose()
        return b"".join(chunks)
    return asyncio.run(run())


def test_an_async_iterable_is_asynchronous_output_encoded_and_closed():
    output = AsyncOutput(["a", b"", b"b", bytearray(b"c")])
    prepared = prepare(output, "200 OK", [("Content-Type", "text/plain; charset=latin-1")])
    assert prepared.is_async and prepared.chunks is None
    assert drive(prepared) == b"abc"
    assert output.closed == 1


def test_async_output_yielding_something_else_fails_naming_it():
    prepared = prepare(AsyncOutput([b"ok", 42]), "200 OK", [])
    with pytest.raises(TypeError, match="yielded int, not bytes"):
        drive(prepared)


def test_synchronous_output_is_not_async():
    assert not prepare([b"x"], "200 OK", []).is_async


# StreamResult

def test_a_stream_result_sets_status_and_headers():
    result = StreamResult(
        [b"1", b"2"], status=201, headers={"X-Fn": "a", "x-view": "fn's"},
        content_type="text/csv", filename="report.csv", content_length=2)
    prepared = prepare(result, "200 OK", VIEW)
    assert prepared.status == "201 Created"
    assert header(prepared, "Content-Type") == "text/csv"   # fn's wins
    assert header(prepared, "X-View") == "fn's"             # case-insensitive
    assert header(prepared, "X-Fn") == "a"
    assert header(prepared, "Content-Disposition") == (
        'attachment; filename="report.csv"')
    assert prepared.content_length == 2
    assert body(prepared) == b"12"


def test_a_stream_result_length_is_kept_as_given():
    # fn says how long its body is; prepare does not count it again (the
    # stream job notices a body that does not match).
    prepared = prepare(StreamResult(b"abc", content_length=10), "200 OK", [])
    assert prepared.content_length == 10


def test_a_stream_result_with_headers_as_pairs_and_a_status_line():
    result = StreamResult(b"", status="299 Custom", headers=[("X-A", "1")])
    prepared = prepare(result, "200 OK", [])
    assert prepared.status == "299 Custom"
    assert header(prepared, "X-A") == "1"


def test_a_stream_result_with_a_bad_status():
    with pytest.raises(ValueError, match="bad status"):
        prepare(StreamResult(b"", status="OK"), "200 OK", [])


# header validation, for fn's headers and the view's

@pytest.mark.parametrize("headers, error, match", [
    ([("X-A", "1\r\nSet-Cookie: evil=1")], ValueError, "CR or LF"),
    ([("X-A\n", "1")], ValueError, "CR or LF"),
    ([("X-A", "1\r")], ValueError, "CR or LF"),
    ([("Connection", "close")], ValueError, "hop-by-hop"),
    ([("Transfer-Encoding", "chunked")], ValueError, "hop-by-hop"),
    ([("content-length", "ten")], ValueError, "not a number of bytes"),
    ([("Content-Length", "-1")], ValueError, "not a number of bytes"),
    ([(b"X-A", "1")], TypeError, "must be str"),
    ([("X-A", 1)], TypeError, "must be str"),
])
def test_bad_headers_are_refused(headers, error, match):
    with pytest.raises(error, match=match):
        prepare(StreamResult(b"", headers=headers), "200 OK", [])
    with pytest.raises(error, match=match):
        prepare(b"", "200 OK", headers)


def test_good_headers_pass():
    # The positive control of the table above.
    prepared = prepare(StreamResult(b"", headers=[("X-A", "1 2"),
                                                 ("Content-Length", " 0 ")]),
                       "200 OK", [("Cache-Control", "no-store")])
    assert header(prepared, "X-A") == "1 2"


# helpers

@pytest.mark.parametrize("filename, expected", [
    ("report.pdf", 'attachment; filename="report.pdf"'),
    ("résumé.pdf",
     "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"),
    ('a"b\\c.txt',
     "attachment; filename=\"a_b_c.txt\"; filename*=UTF-8''a%22b%5Cc.txt"),
    ("a\nb", "attachment; filename=\"a_b\"; filename*=UTF-8''a%0Ab"),
    ("日本.txt", "attachment; filename=\"__.txt\"; "
                "filename*=UTF-8''%E6%97%A5%E6%9C%AC.txt"),
])
def test_attachment(filename, expected):
    value = attachment(filename)
    assert value == expected
    assert value.isascii() and "\n" not in value


@pytest.mark.parametrize("status, line", [
    (200, "200 OK"), (503, "503 Service Unavailable"), (299, "299 Unknown"),
    ("404 Not Found", "404 Not Found"), ("418", "418"),
])
def test_status_line(status, line):
    assert status_line(status) == line


@pytest.mark.parametrize("status", ["OK", "", "2x0 odd"])
def test_status_line_refuses_what_is_not_a_status(status):
    with pytest.raises(ValueError, match="bad status"):
        status_line(status)


def test_merge_headers_replaces_every_header_of_an_overridden_name():
    base = [("Set-Cookie", "a"), ("X-Keep", "1"), ("set-cookie", "b")]
    merged = merge_headers(base, [("SET-COOKIE", "c")])
    assert merged == [("X-Keep", "1"), ("SET-COOKIE", "c")]
    assert merge_headers(base, []) == base


def test_error_prepared():
    prepared = error_prepared(504, "Gateway Timeout")
    assert prepared.status == "504 Gateway Timeout"
    assert prepared.message == "Gateway Timeout"
    assert header(prepared, "Content-Type") == "text/plain; charset=utf-8"
    assert body(prepared) == b"Gateway Timeout\n"
    assert prepared.content_length == len(b"Gateway Timeout\n")


def test_unavailable_is_the_one_503():
    prepared = unavailable("the server is shutting down", 7)
    assert prepared.status == "503 Service Unavailable"
    assert header(prepared, "Retry-After") == "7"
    assert prepared.message == (
        "Service Unavailable: the server is shutting down; retry later")
    data = body(prepared)
    assert data == (prepared.message + "\n").encode()
    assert prepared.content_length == len(data)


def test_prepared_content_length_without_the_header():
    assert Prepared("200 OK", [], iter(()), lambda: None).content_length is None
