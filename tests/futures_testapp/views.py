import json
import threading
import time

from ZODB.POSException import ConflictError

from collective import futures


_lock = threading.Lock()
COUNTERS = {}


def bump(name, by=1):
    with _lock:
        COUNTERS[name] = COUNTERS.get(name, 0) + by
        return COUNTERS[name]


def slow_value(delay, label, counter=None):
    """A promise: sleeps like a slow upstream, then returns plain data."""
    if counter:
        bump(counter + ".started")
    time.sleep(delay)
    if counter:
        bump(counter + ".finished")
    return f"{label} after {delay:g}s"


def failing(message):
    raise ValueError(message)


class View:
    def __init__(self, context, request):
        self.context = context
        self.request = request

    def number(self, name, default):
        return float(self.request.form.get(name, default))


class Plain(View):
    def __call__(self):
        return "plain page"


class Ok(View):
    """As Plone's @@ok: what a proxy's health check asks for."""

    def __call__(self):
        self.request.response.setHeader("Content-Type", "text/plain")
        return "OK"


class Counters(View):
    def __call__(self):
        self.request.response.setHeader("Content-Type", "application/json")
        with _lock:
            return json.dumps(COUNTERS)


class SlowFutures(View):
    def __call__(self):
        delay = self.number("delay", 1)
        bump("slow-futures.passes")
        value = futures.resultOrSubmit(
            "slow", "PLACEHOLDER", slow_value, delay, "slow",
            self.request.form.get("counter"))
        return f"futures: {value}"


class SlowBlocking(View):
    def __call__(self):
        delay = self.number("delay", 1)
        return f"blocking: {slow_value(delay, 'slow')}"


class Parallel(View):
    """Submits n promises in one pass; they must run concurrently."""

    def __call__(self):
        n = int(self.number("n", 3))
        delay = self.number("delay", 1)
        counter = self.request.form.get("counter")
        values = [
            futures.resultOrSubmit(
                f"p{i}", None, slow_value, delay, f"p{i}", counter)
            for i in range(n)
        ]
        if None in values:
            return "PLACEHOLDER"
        if counter:
            bump(counter + ".renders")
        return "parallel: " + ", ".join(values)


class Echo(View):
    """Pass 2 shows what it received: method, path, body digest, form."""

    def __call__(self):
        value = futures.resultOrSubmit("echo", "PLACEHOLDER", slow_value,
                                       self.number("delay", 0.2), "echo")
        request = self.request
        upload = request.form.get("upload")
        data = {
            "value": value,
            "method": request.method,
            "path": request.get("PATH_INFO"),
            "url": request.get("ACTUAL_URL"),
            "form": {k: v for k, v in request.form.items() if isinstance(v, str)},
            "content_length": request.get("CONTENT_LENGTH"),
        }
        if upload is not None:
            content = upload.read()
            data["upload_len"] = len(content)
            data["upload_name"] = upload.filename
            import hashlib
            data["upload_sha256"] = hashlib.sha256(content).hexdigest()
        request.response.setHeader("Content-Type", "application/json")
        return json.dumps(data)


class WriteThenFutures(View):
    """Writes to the ZODB in every pass: pass 1's write must be aborted."""

    def __call__(self):
        app = self.context.getPhysicalRoot()
        log = list(getattr(app, "futures_writes", ()))
        value = futures.resultOrSubmit("w", None, slow_value, 0.1, "w")
        log.append("pass 2" if value is not None else "pass 1")
        app.futures_writes = log
        return json.dumps(log)


class Conflict(View):
    """Pass 2 raises ConflictError once; Zope retries pass 2 only."""

    def __call__(self):
        token = self.request.form["token"]
        value = futures.resultOrSubmit(
            "c", None, slow_value, 0.1, "c", "conflict-" + token)
        if value is None:
            return "PLACEHOLDER"
        if bump("conflict-" + token + ".renders") == 1:
            raise ConflictError("provoked once in pass 2")
        return "after conflict: " + value


class ErrorPromise(View):
    def __call__(self):
        try:
            return "value: " + futures.resultOrSubmit(
                "boom", "PLACEHOLDER", failing, "the promise failed")
        except ValueError as exc:
            return f"promise raised ValueError: {exc}"


class UncaughtError(View):
    def __call__(self):
        return futures.resultOrSubmit("boom", "PLACEHOLDER", failing, "uncaught")


def base_exception(name):
    """A promise that raises a BaseException that is no Exception."""
    raise {"SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt,
           "GeneratorExit": GeneratorExit}[name]("from a promise")


class BaseExceptionPromise(View):
    def __call__(self):
        name = self.request.form.get("raise", "SystemExit")
        try:
            return futures.resultOrSubmit("abort", "PLACEHOLDER",
                                          base_exception, name)
        except futures.FutureAbortedError as exc:
            return f"aborted: {exc}"


class Timeout(View):
    def __call__(self):
        try:
            return futures.resultOrSubmit(
                "hang", "PLACEHOLDER", slow_value, self.number("delay", 30),
                "hang")
        except futures.FutureTimeoutError as exc:
            return f"timed out: {exc}"


class Dependent(View):
    """Each pass submits the next lookup, using the previous result."""

    def __call__(self):
        depth = int(self.number("depth", 2))
        previous = "start"
        for i in range(depth):
            value = futures.result(f"d{i}", default=None)
            if value is None:
                futures.submit(f"d{i}", slow_value, 0.05, f"{previous}>d{i}")
                return "PLACEHOLDER"
            previous = value
        return "dependent: " + previous


class BadInput(View):
    def __call__(self):
        case = self.request.form["case"]
        try:
            if case == "fn":
                futures.submit("k", "not callable")
            elif case == "key":
                futures.submit(42, slow_value, 0, "x")
            elif case == "pickle":
                futures.submitMultiprocess("p", lambda: 1)
            elif case == "executor":
                futures.submit("e", futures.promise(slow_value, executor="gpu"), 0, "x")
            elif case == "resolved":
                value = futures.resultOrSubmit("r", None, slow_value, 0, "r")
                if value is None:
                    return "PLACEHOLDER"
                futures.submit("r", slow_value, 0, "again")
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return "no error"


class CancelAll(View):
    """Submits then cancels: the pass is published as it is."""

    def __call__(self):
        futures.submit("x", slow_value, 5, "x")
        cancelled = futures.cancel("x")
        return f"cancelled={cancelled}"


# Streams

from collective.futures import AsyncWorkerStreamIterator, StreamResult  # noqa: E402


def pattern(size, chunk):
    """Deterministic bytes, produced chunk by chunk (never all in memory)."""
    block = bytes(range(256)) * (chunk // 256 + 1)
    sent = 0
    while sent < size:
        n = min(chunk, size - sent)
        offset = sent % 256
        yield block[offset:offset + n]
        sent += n


def slow_bytes(delay, text):
    time.sleep(delay)
    return text.encode()


def generated(size, chunk, counter=None, delay=0.0):
    if counter:
        bump(counter + ".started")
    try:
        for piece in pattern(size, chunk):
            if delay:
                time.sleep(delay)
            yield piece
    finally:
        if counter:
            bump(counter + ".closed")


def described(filename):
    body = "ünïcode export\n"
    return StreamResult(body, status=201, content_type="text/plain; charset=latin-1",
                        filename=filename, headers={"X-Export": "yes"})


def unicode_text():
    return "grüße"


def temp_file(size):
    import tempfile
    handle = tempfile.TemporaryFile()
    for piece in pattern(size, 65536):
        handle.write(piece)
    handle.seek(0)
    return handle


def failing_stream():
    raise RuntimeError("stream failed before its first byte")


def failing_midway(counter):
    yield b"first part;"
    bump(counter + ".midway")
    raise RuntimeError("stream failed midway")


def counted(counter):
    bump(counter + ".ran")
    return b"ran"


async def async_chunks(size):
    import asyncio

    async def produce():
        for piece in pattern(size, 65536):
            await asyncio.sleep(0)
            yield piece

    return StreamResult(produce(), content_type="application/octet-stream")


def bad_length():
    return StreamResult(b"abc", headers={"Content-Length": "three"})


async def slow_async_bytes(delay, text):
    import asyncio
    await asyncio.sleep(delay)
    return text.encode()


def events(count, delay):
    """Small chunks made slowly (server-sent events, a progress log)."""
    for n in range(count):
        yield f"event {n}\n".encode()
        time.sleep(delay)


class StreamView(View):
    def __call__(self):
        form = self.request.form
        kind = form["kind"]
        counter = form.get("counter")
        size = int(form.get("size", 1000))
        if kind == "bytes":
            return AsyncWorkerStreamIterator(
                slow_bytes, self.request, self.number("delay", 1), "streamed")
        if kind == "gen":
            return AsyncWorkerStreamIterator(
                generated, self.request, size, int(form.get("chunk", 65536)),
                counter, self.number("delay", 0))
        if kind == "result":
            return AsyncWorkerStreamIterator(described, self.request, "ëxport 1.txt")
        if kind == "str":
            return AsyncWorkerStreamIterator(unicode_text, self.request)
        if kind == "file":
            return AsyncWorkerStreamIterator(temp_file, self.request, size)
        if kind == "error":
            return AsyncWorkerStreamIterator(failing_stream, self.request)
        if kind == "midway":
            return AsyncWorkerStreamIterator(failing_midway, self.request, counter)
        if kind == "counted":
            return AsyncWorkerStreamIterator(counted, self.request, counter)
        if kind == "process":
            import procfuncs
            return AsyncWorkerStreamIterator(
                futures.promise(procfuncs.make_bytes, executor="processes"),
                self.request, size)
        if kind == "async-gen":
            return AsyncWorkerStreamIterator(async_chunks, self.request, size)
        if kind == "bad-length":
            return AsyncWorkerStreamIterator(bad_length, self.request)
        if kind == "async-slow":
            return AsyncWorkerStreamIterator(
                slow_async_bytes, self.request, self.number("delay", 1),
                "slow async")
        if kind == "events":
            return AsyncWorkerStreamIterator(
                events, self.request, int(form.get("count", 3)),
                self.number("delay", 0.5))
        if kind == "view-headers":
            self.request.response.setHeader("Content-Type", "text/csv; charset=utf-8")
            self.request.response.setHeader("X-From-View", "1")
            return AsyncWorkerStreamIterator(slow_bytes, self.request, 0.05, "a,b\n")
        raise ValueError(kind)


# Executors

import asyncio  # noqa: E402
import os  # noqa: E402

import procfuncs  # noqa: E402


async def fetch_async(port, delay):
    """An asyncio promise: one HTTP GET to the slow upstream (stdlib only)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET /?delay={delay} HTTP/1.1\r\nHost: up\r\n\r\n".encode())
        await writer.drain()
        status = await reader.readline()
        return status.split()[1].decode()
    finally:
        writer.close()


class AsyncFanout(View):
    def __call__(self):
        n = int(self.number("n", 10))
        port = int(self.request.form["port"])
        delay = self.number("delay", 1)
        results = [futures.resultOrSubmit(f"a{i}", None, fetch_async, port, delay)
                   for i in range(n)]
        if None in results:
            return "PLACEHOLDER"
        self.request.response.setHeader("Content-Type", "application/json")
        return json.dumps({"ok": results.count("200"), "n": n})


class Threads(View):
    def __call__(self):
        import threading
        return json.dumps(sorted(t.name for t in threading.enumerate()))


class ProcessCrash(View):
    def __call__(self):
        how = self.request.form.get("how", "exit")
        square = futures.resultOrSubmitMultiprocess("sq", None, procfuncs.square, 7)
        try:
            died = futures.resultOrSubmitMultiprocess("die", None, procfuncs.die, how)
        except futures.WorkerProcessDiedError as exc:
            died = f"died: {exc}"
        if square is None:
            return "PLACEHOLDER"
        return f"square={square}; {died}"


class ProcessPid(View):
    def __call__(self):
        delay = self.number("delay", 0)
        try:
            pid = futures.resultOrSubmit(
                "pid", None, futures.promise(procfuncs.pid_after, executor="processes"),
                delay)
        except futures.FutureTimeoutError as exc:
            return f"timed out: {exc}"
        return f"pid={pid} zope={os.getpid()}"


def shared_value(counter, delay):
    bump(counter + ".executions")
    time.sleep(delay)
    return f"computed once for {counter}"


class Shared(View):
    def __call__(self):
        counter = self.request.form["counter"]
        ttl = self.number("ttl", 0) or None
        bump(counter + ".passes")
        value = futures.resultOrSubmit(
            counter, None, futures.promise(shared_value, shared=True, ttl=ttl),
            counter, self.number("delay", 0.5))
        return "PLACEHOLDER" if value is None else value


async def cancellable(counter):
    bump(counter + ".started")
    try:
        await asyncio.sleep(30)
    finally:
        bump(counter + ".finally")


class AsyncCancel(View):
    def __call__(self):
        return futures.resultOrSubmit("c", "PLACEHOLDER", cancellable,
                                      self.request.form["counter"])


# Named promises (templates, restricted code)

def upper(text):
    bump("upper.runs")
    return str(text).upper()


def whoami():
    """What a promise sees of the user and the request: nothing."""
    from AccessControl import getSecurityManager
    from zope.globalrequest import getRequest
    user = getSecurityManager().getUser().getUserName()
    try:
        getRequest().form
        request = "request visible"
    except RuntimeError as exc:
        request = f"no request: {str(exc)[:40]}"
    return f"user={user}; {request}"


class ViewMethodPromise(View):
    def __call__(self):
        try:
            futures.submit("m", self.helper)
        except TypeError as exc:
            return f"TypeError: {exc}"
        return "accepted"

    def helper(self):
        return self.context


class PersistentArgument(View):
    def __call__(self):
        try:
            futures.submit("p", str, self.context.getPhysicalRoot())
        except TypeError as exc:
            return f"TypeError: {exc}"
        return "accepted"



# Background tasks (tests/test_functional_tasks.py)

class QueueTask(View):
    """Queues a task to ``path`` (with ``token`` as a parameter) and answers
    its id; ``fail=1`` then raises (the transaction aborts), ``dedup``,
    ``delay``, ``attempts``, ``queue``, ``method``, ``run_as`` (a user id,
    or ``anonymous`` for ANONYMOUS) are passed on."""

    def __call__(self):
        from collective.futures import taskqueue
        form = self.request.form
        kwargs = {}
        for name in ("dedup", "queue", "method"):
            if name in form:
                kwargs[name] = form[name]
        for name in ("delay",):
            if name in form:
                kwargs[name] = float(form[name])
        if "attempts" in form:
            kwargs["attempts"] = int(form["attempts"])
        if "backoff" in form:
            kwargs["backoff"] = float(form["backoff"])
        if "run_as" in form:
            kwargs["run_as"] = (taskqueue.ANONYMOUS if form["run_as"] == "anonymous"
                                else form["run_as"])
        task_id = taskqueue.add(form["path"], params={"token": form.get("token", "")},
                                **kwargs)
        if form.get("fail"):
            raise ValueError("the view failed after queuing its task")
        return task_id


class TaskStatus(View):
    def __call__(self):
        from collective.futures import taskqueue
        self.request.response.setHeader("Content-Type", "application/json")
        return json.dumps(taskqueue.status(self.request.form["id"]))


class TaskJob(View):
    """A task's target: counts its runs in the ZODB (``futures_task_runs``)
    and in memory (``task.<token>`` counters); ``sleep`` seconds;
    ``status`` answers that status instead (``fail_first`` times only);
    ``conflict_first``: raises ConflictError that many times."""

    def __call__(self):
        form = self.request.form
        token = form.get("token", "")
        bump(f"task.{token}.started")
        time.sleep(float(form.get("sleep", 0)))
        if "sleep_once" in form:
            # Sleeps on the first run only, whatever process runs it (a
            # marker file in var/): the run a SIGKILL cuts.
            import os
            from App.config import getConfiguration
            marker = os.path.join(getConfiguration().clienthome, f"task-{token}.slept")
            if not os.path.exists(marker):
                open(marker, "w").close()
                time.sleep(float(form["sleep_once"]))
        fail_first = int(form.get("fail_first", 0))
        if fail_first and bump(f"task.{token}.failures") <= fail_first:
            self.request.response.setStatus(int(form.get("status", 500)))
            return "failing on purpose"
        app = self.context.getPhysicalRoot()
        runs = dict(getattr(app, "futures_task_runs", {}))
        runs[token] = runs.get(token, 0) + 1
        app.futures_task_runs = runs
        conflict_first = int(form.get("conflict_first", 0))
        if conflict_first and bump(f"task.{token}.conflicts") <= conflict_first:
            # After the write: Zope aborts it and publishes the request
            # again, as for a real conflict.
            from ZODB.POSException import ConflictError
            raise ConflictError(f"conflict on purpose ({token})")
        bump(f"task.{token}.committed")
        info = {"token": token, "url": self.request["ACTUAL_URL"],
                "method": self.request["REQUEST_METHOD"],
                "user": str(self.request.get("AUTHENTICATED_USER")),
                "accept_language": self.request.get("HTTP_ACCEPT_LANGUAGE", "")}
        bump(f"task.{token}.info:" + json.dumps(info, sort_keys=True))
        return "done"


class TaskRuns(View):
    def __call__(self):
        app = self.context.getPhysicalRoot()
        self.request.response.setHeader("Content-Type", "application/json")
        return json.dumps(dict(getattr(app, "futures_task_runs", {})))


# docs/tasks.rst's example (snippet taskqueue-example), run as written.

def _tasks_doc_example():
    from doc_snippets import snippet
    namespace = {"__name__": __name__}
    exec(compile(snippet("docs/tasks.rst", "taskqueue-example"),
                 "docs/tasks.rst (snippet taskqueue-example)", "exec"), namespace)
    return namespace["StartConversion"], namespace["ConvertDocument"]


StartConversion, ConvertDocument = _tasks_doc_example()


class AppAttribute(View):
    def __call__(self):
        app = self.context.getPhysicalRoot()
        return repr(getattr(app, self.request.form["name"], None))


class QueueMany(View):
    """Queues ``n`` tasks to ``path`` in one transaction (a flood); with
    ``token``, task number N gets ``token=<token>-N``."""

    def __call__(self):
        from collective.futures import taskqueue
        form = self.request.form
        n = int(form["n"])
        for number in range(n):
            params = {"n": number}
            if form.get("token"):
                params["token"] = f"{form['token']}-{number}"
            taskqueue.add(form["path"], params=params)
        return str(n)


class TaskEffect(View):
    """A task's target for floods over several instances: counts its run
    in an OOBTree of the root (token -> runs), whose concurrent inserts
    resolve instead of conflicting; ``sleep`` seconds first."""

    def __call__(self):
        from BTrees.OOBTree import OOBTree
        form = self.request.form
        time.sleep(float(form.get("sleep", 0)))
        app = self.context.getPhysicalRoot()
        effects = getattr(app, "futures_task_effects", None)
        if effects is None:
            effects = app.futures_task_effects = OOBTree()
        effects[form["token"]] = effects.get(form["token"], 0) + 1
        return "done"


class TaskEffects(View):
    def __call__(self):
        app = self.context.getPhysicalRoot()
        self.request.response.setHeader("Content-Type", "application/json")
        return json.dumps(dict(getattr(app, "futures_task_effects", {})))


class TaskDoneRecords(View):
    """The ids in the ZODB's record of done tasks."""

    def __call__(self):
        from collective.futures.zope.tasks import DONE_KEY
        root = self.context.getPhysicalRoot()._p_jar.root()
        self.request.response.setHeader("Content-Type", "application/json")
        return json.dumps(sorted(root.get(DONE_KEY, {}).keys()))


class TaskNoop(View):
    def __call__(self):
        return "ok"


# Fragments (issue 16): a page whose slow parts are holes it fills

def render_news(items):
    """A renderer: plain data in, markup out (declared: Markup)."""
    from html import escape
    return futures.Markup(
        "<ul class='news'>" + "".join(f"<li>{escape(str(item))}</li>"
                                      for item in items) + "</ul>")


def render_shout(value):
    """The named fragment's renderer: markup around escaped text."""
    from html import escape
    return futures.Markup(f"<strong class='shout'>{escape(value)}</strong>")


def render_text(value):
    """A renderer returning text: escaped in the page."""
    return f"text: {value}"


def render_raising(value):
    raise RuntimeError("this renderer fails")


def render_with_request(value):
    """A renderer that reaches for the request: it fails loudly."""
    from zope.globalrequest import getRequest
    return getRequest().get("HTTP_COOKIE", "")


def render_user(value):
    """A renderer that asks who the user is: nobody."""
    from AccessControl import getSecurityManager
    return f"user={getSecurityManager().getUser().getUserName()}"


def news_items(delay, label):
    time.sleep(delay)
    return [f"{label} 1", f"{label} 2 <b>&"]


def slow_text(delay, text, counter=None):
    if counter:
        bump(counter + ".started")
    time.sleep(delay)
    return text


def render_hanging(value):
    """A renderer that takes far longer than any deadline."""
    time.sleep(30)
    return "too late"


def render_exit(value):
    raise SystemExit("a renderer that exits")


RENDERERS = {"news": render_news, "text": render_text, "raising": render_raising,
             "request": render_with_request, "user": render_user,
             "hanging": render_hanging, "exit": render_exit}


class FragmentPage(View):
    """An HTML page with ``n`` fragments below its content. Query:
    ``delay``, ``n``, ``render`` (a RENDERERS name), ``fail`` (the promise
    raises: ValueError, or the BaseException named), ``on_error`` (the promise's fallback value), ``progressive``
    (1/0), ``mixed`` (an ordinary promise too), ``text`` (what slow_text
    returns), ``counter``."""

    def __call__(self):
        form = self.request.form
        bump("fragment-page.passes")
        delay = self.number("delay", 0.3)
        render = RENDERERS[form.get("render", "news")]
        if "progressive" in form:
            futures.progressive(form["progressive"] == "1")
        holes = []
        for i in range(int(form.get("n", 1))):
            if form.get("fail") in ("SystemExit", "KeyboardInterrupt"):
                fn, args = base_exception, (form["fail"],)
            elif "fail" in form:
                fn = failing
                args = ("upstream down",)
            elif "text" in form:
                fn, args = slow_text, (delay * (i + 1), form["text"], form.get("counter"))
            else:
                fn, args = news_items, (delay * (i + 1), f"item{i}")
            if "on_error" in form:
                fn = futures.promise(fn, on_error=[form["on_error"]])
            holes.append(futures.fragment(f"part{i}", render, fn, *args))
        mixed = ""
        if "mixed" in form:
            mixed = futures.resultOrSubmit(
                "ordinary", "PLACEHOLDER", slow_value, delay, "ordinary")
        self.request.response.setHeader("Content-Type", "text/html; charset=utf-8")
        return ("<!DOCTYPE html><html><head><title>fragments</title></head>"
                "<body><h1>The page</h1>" + "".join(
                    f"<div id='slot{i}'>{hole}</div>" for i, hole in enumerate(holes))
                + f"<p id='mixed'>{mixed}</p><p>The end of the page.</p></body></html>")


class FragmentOddCases(View):
    """A fragment in a page that is no page to fill (``case``): a stream,
    a redirect; or one refused at the call: a renderer that closes over
    the view, a key used for a fragment and a promise."""

    def __call__(self):
        case = self.request.form["case"]
        if case == "closure":
            try:
                futures.fragment("k", lambda value: self.context.getId(),
                                 slow_value, 0, "x")
            except TypeError as exc:
                return f"refused: {exc}"
            return "accepted"
        if case in ("reuse", "reuse-reversed"):
            try:
                if case == "reuse":
                    futures.fragment("k", render_text, slow_value, 0, "x")
                    futures.submit("k", slow_value, 0, "x")
                else:
                    futures.submit("k", slow_value, 0, "x")
                    futures.fragment("k", render_text, slow_value, 0, "x")
            except ValueError as exc:
                futures.cancel("k")
                return f"refused: {exc}"
            return "accepted"
        hole = futures.fragment("odd", render_text, slow_text, 0, "filled", "odd-case")
        if case == "stream":
            from collective.futures import AsyncWorkerStreamIterator
            return AsyncWorkerStreamIterator(slow_text, self.request, 0, "streamed")
        if case == "redirect":
            self.request.response.redirect(self.request["URL1"] + "/@@plain")
            return f"<html><body>{hole}</body></html>"
        raise ValueError(case)


class FragmentMethodRenderer(View):
    """A renderer that is a method of the view: refused at the call."""

    def render(self, value):
        return str(value)

    def __call__(self):
        try:
            futures.fragment("k", self.render, slow_value, 0.1, "x")
        except TypeError as exc:
            return f"refused: {exc}"
        return "accepted"


class FragmentForged(View):
    """A page whose content carries a placeholder someone wrote by hand."""

    def __call__(self):
        hole = futures.fragment("real", render_text, slow_text, 0.1, "filled")
        forged = '<span data-futures-fragment="0123456789abcdef"></span>'
        self.request.response.setHeader("Content-Type", "text/html; charset=utf-8")
        return f"<html><body><div id='real'>{hole}</div><div id='forged'>{forged}</div></body></html>"
