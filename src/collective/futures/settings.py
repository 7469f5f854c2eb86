"""Configuration: one table, one object.

The options live in ``<product-config collective.futures>`` in zope.conf,
where every value arrives as a string. :data:`OPTIONS` is the single source
of truth: the Settings fields and defaults are made from it, and the test
suite checks the manual's option list against it.
"""

import dataclasses
import math

from .exceptions import ConfigurationError


def _positive_int(value):
    number = int(value)
    if number < 1:
        raise ValueError("must be 1 or more")
    return number


def _count(value):
    number = int(value)
    if number < 0:
        raise ValueError("must be 0 or more")
    return number


def _start_method(value):
    text = str(value).strip()
    if text == "fork":
        raise ValueError(
            "fork is unsafe in a threaded server (a child inherits locks held "
            "by other threads); use forkserver or spawn")
    if text not in ("forkserver", "spawn"):
        raise ValueError("must be forkserver or spawn")
    return text


def _dotted(value):
    text = str(value).strip()
    module, sep, attr = text.partition(":")
    if not sep:
        module, _, attr = text.rpartition(".")
    if not module or not attr or not all(
            part.isidentifier() for part in module.split(".") + attr.split(".")):
        raise ValueError("must be a dotted name such as my.module:make_executor")
    return text


def _slots(value):
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    return _count(text)


def _token(value):
    text = str(value).strip()
    if text and len(text) < 16:
        raise ValueError("a scrape token must have 16 characters or more")
    return text


def _overload(value):
    text = str(value).strip().lower()
    if text not in ("reject", "wait"):
        raise ValueError("must be reject (503) or wait (run in the worker)")
    return text


def _passes(value):
    number = int(value)
    if number < 2:
        raise ValueError("must be 2 or more (pass 1 submits, pass 2 renders)")
    return number


def _seconds(value):
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError("must be a positive number of seconds")
    return number


_TRUE = {"on", "true", "yes", "1"}
_FALSE = {"off", "false", "no", "0"}


def _markup(value):
    text = str(value)
    if len(text) > 10000:
        raise ValueError("must be at most 10000 characters of HTML")
    return text


def _boolean(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("must be on or off")


def _task_backend(value):
    text = str(value).strip()
    from .tasks.redis import is_redis_url, parse_url
    if is_redis_url(text):
        parse_url(text)  # ValueError saying what is wrong
        try:
            import redis  # noqa: F401
        except ImportError:
            raise ValueError("a Redis URL needs redis-py: install "
                             "collective.futures[redis]") from None
        return text
    scheme, sep, rest = text.partition(":")
    if scheme != "sqlite" or not sep or not rest.strip():
        raise ValueError("must be sqlite:PATH (a file; a relative PATH is in "
                         "the instance's var/ directory) or a Redis URL "
                         "(redis://, rediss://, unix://, redis+sentinel://)")
    return text


def _queue_names(value):
    from .tasks.model import check_queue_name
    names = str(value).split()
    if not names:
        raise ValueError("must name one queue or more")
    try:
        for name in names:
            check_queue_name(name)
    except Exception as exc:
        raise ValueError(str(exc)) from None
    if len(set(names)) != len(names):
        raise ValueError("names a queue twice")
    return " ".join(names)


def _attempts(value):
    number = int(value)
    if not 1 <= number <= 100:
        raise ValueError("must be from 1 to 100")
    return number


def _secret(value):
    text = str(value).strip()
    if text and len(text) < 32:
        raise ValueError("a task secret must have 32 characters or more")
    return text


def _http_url(value):
    text = str(value).strip()
    if text and not (text.startswith("http://") and len(text) > len("http://")):
        raise ValueError("must be an http:// URL (the instance's own address)")
    return text.rstrip("/")


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    convert: object
    default: object
    doc: str


OPTIONS = (
    Option(
        "max_workers", _positive_int, 32,
        "Threads of the ``threads`` executor (the default), shared by all "
        "requests. Promises beyond it wait in its queue.",
    ),
    Option(
        "max_queue", _count, 1000,
        "Promises that may wait for a thread. A request whose promises would "
        "pass it is answered 503 at the end of its pass; a promise that "
        "still finds the queue full fails with ``ExecutorFullError``.",
    ),
    Option(
        "process_workers", _positive_int, 2,
        "Worker processes of the ``processes`` executor (CPU-bound work), "
        "started on first use.",
    ),
    Option(
        "process_max_queue", _count, 100,
        "Promises that may wait for a worker process.",
    ),
    Option(
        "process_start_method", _start_method, "forkserver",
        "``forkserver`` or ``spawn``; ``fork`` is refused (never fork a "
        "threaded server).",
    ),
    Option(
        "asyncio_max_concurrency", _positive_int, 1000,
        "Coroutines the ``asyncio`` executor runs at once on its one loop "
        "thread.",
    ),
    Option(
        "asyncio_max_queue", _count, 10000,
        "Coroutines that may wait for a slot on the loop.",
    ),
    Option(
        "shared_max_entries", _positive_int, 1000,
        "Results of shared promises kept for their time-to-live; the least "
        "recently used go first.",
    ),
    Option(
        "timeout", _seconds, 30.0,
        "Seconds a promise may take, counted from the end of the pass that "
        "submitted it (queueing included). Past it, ``result()`` raises "
        "``FutureTimeoutError`` in the next pass.",
    ),
    Option(
        "max_passes", _passes, 3,
        "Most passes one request may take, the final render included: 2 "
        "allows one round of promises, 3 allows dependent lookups.",
    ),
    Option(
        "max_streams", _positive_int, 1000,
        "Handed-off streams at once, from the view's return to the last "
        "byte; past it a new stream gets a 503. A stream costs no thread "
        "while ``fn`` waits on an async call or while its client reads.",
    ),
    Option(
        "stream_threads", _positive_int, 8,
        "Threads that iterate the synchronous output of streams (a "
        "generator, a file), a stream holding one only while its output "
        "computes the next chunk; ``fn`` itself runs on its executor.",
    ),
    Option(
        "fragments_progressive", _boolean, False,
        "Send a page whose slow parts are all fragments at once, with its "
        "holes, and each fragment after it in the same response as its "
        "result arrives (a line of inline script puts it in place). "
        "A page may ask for it, or refuse it, with "
        "``futures.progressive()``. Off: the page is sent once its holes "
        "are filled.",
    ),
    Option(
        "fragment_fallback", _markup, "",
        "The HTML a fragment's hole gets when its promise failed or timed "
        "out without an ``on_error`` value, or its renderer failed "
        "(inserted as it is: trusted configuration). Default: nothing.",
    ),
    Option(
        "max_suspended", _positive_int, 1000,
        "Requests that may be suspended at once; past it a request that "
        "wants to suspend gets ``overload``'s answer.",
    ),
    Option(
        "watch_hangups", _boolean, True,
        "Read a suspended request's connection (and a stream's) so that a "
        "client that hangs up has its promises dropped at once. A client "
        "that half-closes its connection after sending its request is then "
        "taken for gone. ``false``: answer such clients, noticing a hang-up "
        "only when the response is written, as for a blocking view.",
    ),
    Option(
        "descriptor_reserve", _count, 256,
        "File descriptors kept free for everything else (ZODB files, logs, "
        "new connections, plain requests): past ``ulimit -n`` minus this, "
        "a request that wants to suspend, or a new stream, gets "
        "``overload``'s answer. The package raises the soft ``ulimit -n`` "
        "to the hard one (at most 65536) at startup.",
    ),
    Option(
        "overload", _overload, "reject",
        "What a request gets when ``max_suspended`` requests are suspended: "
        "``reject``, a 503 with ``Retry-After``; ``wait``, its promises run "
        "while its worker waits. A full executor queue is always a 503.",
    ),
    Option(
        "retry_after", _positive_int, 5,
        "Seconds in the ``Retry-After`` header of a 503.",
    ),
    Option(
        "resume_slots", _slots, "auto",
        "Resumed requests allowed in waitress's task queue at once; the rest "
        "wait their turn so fresh requests are not stuck behind a burst of "
        "re-queued passes. ``auto``: waitress's ``threads``; ``0``: no limit.",
    ),
    Option(
        "shutdown_grace", _seconds, 20.0,
        "Seconds SIGTERM/SIGINT waits for running promises before answering "
        "the requests still suspended with a 503 and exiting.",
    ),
    Option(
        "history_interval", _seconds, 5.0,
        "Seconds between two points of the metrics' recent history (the "
        "Control Panel's chart keeps the last 120).",
    ),
    Option(
        "metrics_token", _token, "",
        "A bearer token that lets a scraper read ``@@futures-metrics`` "
        "without a Manager login (16 characters or more).",
    ),
    Option(
        "metrics_registry", _boolean, True,
        "``on``: the package's metrics are also in prometheus_client's "
        "default registry, for a metrics endpoint of the site's that serves "
        "it (with that endpoint's access rules, not ``@@futures-metrics``'s). "
        "``off`` keeps them to ``@@futures-metrics``.",
    ),
    Option(
        "task_backend", _task_backend, "sqlite:tasks.db",
        "Where background tasks wait: ``sqlite:PATH``, a SQLite file (a "
        "relative ``PATH`` is in the instance's ``var/``; instances on one "
        "machine that name the same file share its tasks), or Redis, for "
        "instances on many machines: ``redis://[:PASSWORD@]HOST:PORT/DB``, "
        "``rediss://`` (TLS), ``unix:///PATH?db=N``, or "
        "``redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT]/SERVICE[/DB]``; "
        "``?prefix=NAME:`` sets the keys' prefix (default "
        "``collective.futures:``). Needs ``collective.futures[redis]``.",
    ),
    Option(
        "task_queues", _queue_names, "default",
        "The task queues (names of a-z, 0-9, ``-``, ``_``, ``.``, separated "
        "by spaces); the first is the one ``taskqueue.add`` uses when "
        "given none, and every one is consumed.",
    ),
    Option(
        "task_consumer", _boolean, False,
        "``on``: this instance runs tasks (each one a request to itself). "
        "Instances that only queue tasks leave it ``off``.",
    ),
    Option(
        "task_concurrency", _positive_int, 1,
        "Tasks this instance runs at once: each takes one of waitress's "
        "worker threads while it runs, so keep it below ``threads``.",
    ),
    Option(
        "task_lease", _seconds, 300.0,
        "Seconds a task is leased to its consumer, extended while its "
        "request runs; a task whose instance died is delivered again once "
        "its lease has expired.",
    ),
    Option(
        "task_timeout", _seconds, 3600.0,
        "Seconds a task's request may take before it counts as failed "
        "(and is retried).",
    ),
    Option(
        "task_attempts", _attempts, 5,
        "Attempts of a task (unless ``taskqueue.add`` says otherwise) "
        "before it goes to the dead letters.",
    ),
    Option(
        "task_backoff", _seconds, 2.0,
        "Seconds before the first retry of a failed task; each further "
        "one waits up to twice as long (with jitter), at most an hour.",
    ),
    Option(
        "task_poll", _seconds, 1.0,
        "Seconds between two looks for due tasks when the queue is idle "
        "(tasks queued by this instance start at once; on Redis, those "
        "queued by any instance).",
    ),
    Option(
        "task_keep_done", _seconds, 604800.0,
        "Seconds a done task's status is kept (for ``taskqueue.status``): "
        "a week.",
    ),
    Option(
        "task_keep_dead", _seconds, 2592000.0,
        "Seconds a dead task is kept in the dead letters (to be re-queued "
        "or deleted) before it is purged: thirty days.",
    ),
    Option(
        "task_secret", _secret, "",
        "The secret that signs task requests (32 characters or more). "
        "Empty: a random one kept in the task backend, the same for every "
        "instance sharing it.",
    ),
    Option(
        "task_url", _http_url, "",
        "The address the consumer sends task requests to. Empty: this "
        "instance's own waitress address.",
    ),
    Option(
        "suspend", _boolean, True,
        "``on``: under waitress, free the worker thread while promises run. "
        "``off``: always wait in the worker (the mode used under other "
        "servers and test browsers).",
    ),
)

_BY_NAME = {option.name: option for option in OPTIONS}

#: ``executor.NAME my.module:factory`` plugs in any
#: ``concurrent.futures.Executor``; ``factory()`` is called on first use.
EXECUTOR_PREFIX = "executor."
BUILTIN_EXECUTORS = ("threads", "processes", "asyncio")
#: ``task_periodic.NAME SCHEDULE PATH`` declares a periodic task
#: (tasks/schedule.py says what SCHEDULE may be).
PERIODIC_PREFIX = "task_periodic."
#: Names no custom executor may take: the stream pool is ``streams``.
RESERVED_EXECUTORS = BUILTIN_EXECUTORS + ("streams",)


class _SettingsMethods:
    @property
    def executor_names(self):
        return BUILTIN_EXECUTORS + tuple(name for name, _ in self.executors)

    @classmethod
    def from_mapping(cls, mapping=None):
        """Validate ``mapping`` (strings or values) into Settings.

        An unknown key or a bad value raises :class:`ConfigurationError`
        naming it.
        """
        values, executors, periodic = {}, [], []
        for key, raw in (mapping or {}).items():
            if key.startswith(EXECUTOR_PREFIX):
                executors.append(_custom_executor(key, raw))
                continue
            if key.startswith(PERIODIC_PREFIX):
                periodic.append(_periodic_task(key, raw))
                continue
            option = _BY_NAME.get(key)
            if option is None:
                raise ConfigurationError(
                    f"<product-config collective.futures>: unknown key "
                    f"{key!r}; known keys: {', '.join(sorted(_BY_NAME))}, "
                    f"{EXECUTOR_PREFIX}NAME for a custom executor and "
                    f"{PERIODIC_PREFIX}NAME for a periodic task"
                )
            try:
                values[key] = option.convert(raw)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(
                    f"<product-config collective.futures>: bad value "
                    f"{_shown(key, raw)} for {key!r}: {exc}"
                ) from exc
        return cls(executors=tuple(sorted(executors)), periodic=tuple(sorted(periodic)),
                   **values)


#: Validated settings, one field per entry of :data:`OPTIONS` (with its
#: default) plus ``executors``, the (name, dotted factory) pairs of the
#: ``executor.NAME`` keys. Build from zope.conf with
#: ``Settings.from_mapping``; ``Settings(timeout=5)`` for tests.
Settings = dataclasses.make_dataclass(
    "Settings",
    [(option.name, type(option.default),
      dataclasses.field(default=option.default)) for option in OPTIONS]
    + [("executors", tuple, dataclasses.field(default=())),
       ("periodic", tuple, dataclasses.field(default=()))],
    bases=(_SettingsMethods,), frozen=True, kw_only=True)
Settings.__module__ = __name__
Settings.__doc__ = """Validated settings: one keyword per option of :data:`OPTIONS`
(and ``executors``; ``periodic``, the (name, schedule, path) of the
``task_periodic.NAME`` keys). Build with :meth:`from_mapping`."""


def _custom_executor(key, raw):
    name = key[len(EXECUTOR_PREFIX):]
    if not name.isidentifier():
        raise ConfigurationError(
            f"<product-config collective.futures>: {key!r}: the executor name "
            f"must be an identifier")
    if name in RESERVED_EXECUTORS:
        raise ConfigurationError(
            f"<product-config collective.futures>: {key!r}: {name!r} is a "
            f"built-in executor or the stream pool; choose another name")
    try:
        return name, _dotted(raw)
    except ValueError as exc:
        raise ConfigurationError(
            f"<product-config collective.futures>: bad value {raw!r} for "
            f"{key!r}: {exc}") from exc


def _periodic_task(key, raw):
    """(name, schedule text, path) of ``task_periodic.NAME SCHEDULE PATH``."""
    from .tasks.model import target
    from .tasks.schedule import parse
    # Lower case, as ZConfig gives zope.conf's keys (and ZCML's names are).
    name = key[len(PERIODIC_PREFIX):].lower()
    if not name or not all(ch.isalnum() or ch in "-_." for ch in name):
        raise ConfigurationError(
            f"<product-config collective.futures>: {key!r}: the periodic task's "
            f"name must be letters, digits, '-', '_' or '.'")
    if str(raw).strip() == "off":
        # Switches off the periodic task of that name declared in ZCML.
        return name, "off", ""
    schedule, _, path = str(raw).strip().rpartition(" ")
    try:
        parse(schedule)
        path = target(path)
    except Exception as exc:
        raise ConfigurationError(
            f"<product-config collective.futures>: bad value {raw!r} for {key!r}: "
            f"{exc} (the value is SCHEDULE PATH: '0 3 * * * /Plone/@@nightly', "
            f"'@every 60 /Plone/@@tick', or 'off' for one declared in ZCML)") from exc
    return name, schedule.strip(), path


#: Environment variables override ``<product-config collective.futures>``:
#: ``COLLECTIVE_FUTURES_TASK_BACKEND`` for ``task_backend`` (how container
#: images, which make zope.conf from their environment, pass settings).
ENVIRONMENT_PREFIX = "COLLECTIVE_FUTURES_"


def from_environment(environ):
    """The options set by ``environ``'s COLLECTIVE_FUTURES_* variables, as
    a raw mapping for Settings.from_mapping. A variable that names no
    option, or whose value is bad, raises ConfigurationError naming the
    variable."""
    found = {}
    for variable, raw in environ.items():
        if not variable.startswith(ENVIRONMENT_PREFIX):
            continue
        key = variable[len(ENVIRONMENT_PREFIX):].lower()
        option = _BY_NAME.get(key)
        if option is None:
            raise ConfigurationError(
                f"environment variable {variable}: no such option (the "
                f"options, in upper case after {ENVIRONMENT_PREFIX}: "
                f"{', '.join(sorted(name.upper() for name in _BY_NAME))})")
        try:
            option.convert(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"environment variable {variable}: bad value {_shown(key, raw)}: "
                f"{exc}") from exc
        found[key] = raw
    return found


def _shown(key, raw):
    """How an error message shows a bad value: a secret not at all, a
    backend URL without its passwords."""
    if key in ("task_secret", "metrics_token"):
        return "(not shown: a secret)"
    if key == "task_backend":
        from .tasks.redis import public_url
        return repr(public_url(str(raw)))
    return repr(raw)
