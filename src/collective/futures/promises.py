"""What one client request knows about its futures, across passes.

Runs on: the Zope worker thread publishing a pass (submit, result) and,
between passes, the side thread that records a round's outcomes. The two
never overlap: a pass ends (and hands its promises over) before the round
starts, and the next pass starts only after the round handed its outcomes
back, so this state needs no lock.
"""

import dataclasses
import typing


#: WSGI environ key holding the :class:`RequestFutures` of a client request.
STATE_KEY = "collective.futures.state"
#: WSGI environ key set by a server that can suspend a request between
#: passes (collective.futures' waitress channel); its value names the server.
SUSPEND_KEY = "collective.futures.suspend"


@dataclasses.dataclass(frozen=True)
class Promise:
    """A call to run outside the worker: ``fn(*args, **kwargs)``."""

    key: str
    fn: typing.Callable
    args: tuple = ()
    kwargs: dict = dataclasses.field(default_factory=dict)

    def __call__(self):
        return self.fn(*self.args, **self.kwargs)

    @property
    def name(self):
        """A readable name of the function, for logs."""
        fn = self.fn
        return getattr(fn, "__qualname__", None) or repr(fn)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a promise produced: a value, or the exception it raised."""

    value: object = None
    error: BaseException = None

    def unwrap(self):
        if self.error is not None:
            raise self.error
        return self.value


class RequestFutures:
    """The promises and results of one client request.

    ``resolved`` survives from pass to pass (and across Zope's ConflictError
    retries); ``pending`` holds what the current pass submitted.
    """

    def __init__(self):
        self.resolved = {}
        self.pending = {}
        self.rounds = 0

    @property
    def passes(self):
        """Passes published so far, the current one included."""
        return self.rounds + 1

    def begin_pass(self):
        """A pass starts (or is retried): forget what was submitted before."""
        self.pending.clear()

    def take_pending(self):
        """Hand this pass's promises to a round; counts the round."""
        promises, self.pending = self.pending, {}
        self.rounds += 1
        return promises

    def record(self, outcomes):
        """Store a finished round's outcomes (key -> :class:`Outcome`)."""
        self.resolved.update(outcomes)

    def __repr__(self):
        return (
            f"<RequestFutures pass={self.passes} "
            f"resolved={sorted(self.resolved)} pending={sorted(self.pending)}>"
        )
