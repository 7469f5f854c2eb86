"""Functions the executor tests run in worker processes (importable by
name, as the processes executor requires) and a custom executor factory."""

import concurrent.futures
import os
import signal
import time


def square(x):
    return x * x


def pid_after(delay):
    time.sleep(delay)
    return os.getpid()


def touch_then_sleep(path, delay):
    """Say "started" (by creating ``path``), then take ``delay`` seconds."""
    open(path, "w").close()
    time.sleep(delay)
    return os.getpid()


def die(how):
    if how == "exit":
        os._exit(3)
    os.kill(os.getpid(), getattr(signal, how))
    time.sleep(5)


def fail(message):
    raise LookupError(message)


def unpicklable_result():
    return lambda: None


class InlineExecutor(concurrent.futures.Executor):
    """A custom executor: runs calls at once in the submitting thread."""

    def __init__(self):
        self.calls = 0

    def submit(self, fn, /, *args, **kwargs):
        self.calls += 1
        future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


def make_inline_executor():
    return InlineExecutor()


def make_bytes(size):
    return b"p" * size
