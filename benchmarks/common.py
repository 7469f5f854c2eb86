"""What the benchmarks share: the machine and the code measured, and how a
benchmark says that what it measured crashed or answered wrongly.

A benchmark's ``run()`` returns a plain dict of figures with a
``"failures"`` list; when the list is not empty it raises
``BenchmarkFailed`` carrying that dict, so a caller (the suite, a command
line) can still record what was measured next to why it is not a result.
"""

import contextlib
import hashlib
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import threading


ROOT = pathlib.Path(__file__).resolve().parent.parent


def cpu_seconds(pid):
    """utime + stime of process ``pid`` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class BenchmarkFailed(Exception):
    """What a benchmark measured crashed or gave wrong results: its figures
    describe a failure, not the code. ``report`` holds what was measured,
    ``report["failures"]`` the reasons; fix the cause and run it again."""

    def __init__(self, report):
        self.report = report
        super().__init__("; ".join(report["failures"]))


class Checks:
    """Collects the failures of one run: each ``expect()`` that does not
    hold is one line of ``failures``."""

    def __init__(self):
        self.failures = []

    def expect(self, condition, message):
        if not condition:
            self.failures.append(message)
        return condition

    def alive(self, zope, what, grace=0.0):
        """Expect the instance to be still running. ``grace``: how long to
        wait for one that may be dying to be reaped (a killed process closes
        its sockets before it can be: a client may see the hang-up first)."""
        try:
            code = zope.process.wait(grace) if grace else zope.process.poll()
        except subprocess.TimeoutExpired:
            code = None
        return self.expect(code is None, (
            f"{what}: the Zope instance died during the measurement (exit "
            f"code {code}); its log ends: {log_tail(zope)!r}"))

    @contextlib.contextmanager
    def running(self, zope, what):
        """The block measures ``zope``, which must still be running at its
        end; stops it."""
        try:
            yield zope
        except BaseException:
            self.alive(zope, what, grace=2.0)
            raise
        else:
            self.alive(zope, what)
        finally:
            zope.stop()

    @contextlib.contextmanager
    def guard(self, report):
        """An exception in the block (a refused connection, a timeout, an
        instance that did not start) is a failure of the run: raise
        BenchmarkFailed with what was measured until then."""
        try:
            yield
        except BenchmarkFailed:
            raise
        except Exception as exc:
            self.failures.append(f"crashed: {type(exc).__name__}: {exc}")
            report["failures"] = list(self.failures)
            raise BenchmarkFailed(report) from exc

    def finish(self, report):
        """Record the failures in ``report``; raise if there are any."""
        report["failures"] = list(self.failures)
        if self.failures:
            raise BenchmarkFailed(report)
        return report


def log_tail(zope, chars=600):
    return zope.log()[-chars:]


def machine():
    """The machine and the versions of what serves the requests."""
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count()}
    try:
        cpuinfo = pathlib.Path("/proc/cpuinfo").read_text()
        info["cpu"] = re.search(r"model name\s*:\s*(.*)", cpuinfo).group(1)
        meminfo = pathlib.Path("/proc/meminfo").read_text()
        info["memory_gib"] = round(
            int(re.search(r"MemTotal:\s*(\d+)", meminfo).group(1)) / 2**20, 1)
    except (OSError, AttributeError):
        pass
    from importlib.metadata import version
    for package in ("Zope", "waitress"):
        info[package] = version(package)
    return info


def _git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True,
                          check=True).stdout


def commit(exclude=()):
    """The code a run measures: ``sha`` (``git rev-parse HEAD``), ``dirty``
    (tracked changes or untracked, not ignored, files), the changed paths
    (``git status --porcelain``) and a digest of the changes against HEAD
    (``git diff HEAD``), so two runs on the same dirty tree can be told
    apart from runs on different ones (untracked files are named, not
    digested). ``exclude``: paths that do not count (the run's own output
    files). ``sha`` is None outside a git checkout."""
    root = ROOT.resolve()
    excluded = []
    for path in exclude:
        path = pathlib.Path(path).resolve()
        if path.is_relative_to(root):
            excluded.append(path.relative_to(root).as_posix())
    try:
        sha = _git("rev-parse", "HEAD").decode().strip()
        status = [line for line in _git(
            "status", "--porcelain", "--no-renames").decode().splitlines()
            if line[3:].strip('"') not in excluded]
        diff = _git("diff", "HEAD", "--binary", "--", ".",
                    *(f":(exclude){path}" for path in excluded))
    except (OSError, subprocess.CalledProcessError) as exc:
        return {"sha": None, "dirty": None, "error": str(exc)}
    state = {"sha": sha, "dirty": bool(status)}
    if status:
        state["changes"] = status
        state["diff_sha256"] = hashlib.sha256(diff).hexdigest()
    return state


def command_line(run, summary, json_path=None, **parameters):
    """Run a benchmark from its command line: print ``summary(report)``,
    write the report to ``json_path`` (failed or not), and exit with
    status 1 naming the failures when the run failed."""
    try:
        report, failed = run(**parameters), None
    except BenchmarkFailed as exc:
        report, failed = exc.report, exc
    try:
        print(summary(report))
    except (KeyError, TypeError, ValueError):
        # A failed run may lack figures the summary prints.
        print("(the figures are incomplete)")
    if json_path:
        pathlib.Path(json_path).write_text(json.dumps(report, indent=2) + "\n")
    if failed is not None:
        sys.exit("FAILED:\n  " + "\n  ".join(report["failures"]))
    return report


class RssSampler:
    """Peak RSS of the instance every 20 ms; ``error`` if sampling failed
    (the process is gone)."""

    def __init__(self, zope):
        self.zope = zope
        self.peak = zope.rss()
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler",
                                        daemon=True)

    def _run(self):
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, self.zope.rss())
            except (OSError, RuntimeError) as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
