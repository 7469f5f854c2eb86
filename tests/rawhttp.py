"""HTTP over a plain socket, for what http.client hides: pipelining,
``Expect: 100-continue`` and hanging up mid-request."""

import socket


class Connection:
    """A socket and a buffered reader on it; ``close()`` closes both (the
    socket's descriptor stays open while its reader exists)."""

    def __init__(self, address, timeout=30):
        self.sock = socket.create_connection(address, timeout=timeout)
        self.stream = self.sock.makefile("rb")

    def send(self, data):
        self.sock.sendall(data)

    def read_response(self):
        return read_response(self.stream)

    def close(self):
        self.stream.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def get(path, host="localhost", extra=""):
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").encode("latin-1")


def read_response(stream):
    """Read one response: (status, headers dict with lower-case names, body)."""
    status_line = stream.readline()
    if not status_line:
        raise ConnectionError("connection closed before a response")
    version, status, _ = status_line.decode("latin-1").split(" ", 2)
    headers = {}
    while True:
        line = stream.readline().decode("latin-1")
        if line in ("\r\n", "\n", ""):
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(status)
    if status == 100 or status == 204 or status == 304:
        return status, headers, b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(stream.readline().split(b";")[0], 16)
            if size == 0:
                stream.readline()
                break
            body += stream.read(size)
            stream.readline()
        return status, headers, body
    length = headers.get("content-length")
    if length is not None:
        return status, headers, stream.read(int(length))
    return status, headers, stream.read()


def read_until(sock, marker, deadline, seen=None):
    """What ``sock`` sends until ``marker`` has come, the peer closes or
    the monotonic ``deadline`` passes; ``seen(data)``, when given, hears
    the data so far after each read (to time a part's arrival)."""
    import time
    data = b""
    sock.settimeout(0.2)
    while marker not in data and time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        data += chunk
        if seen is not None:
            seen(data)
    return data
