"""What one client request knows about its futures, across passes.

Runs on: the Zope worker thread publishing a pass (submit, result) and,
between passes, the side thread that records a round's outcomes. The two
never overlap: a pass ends (and hands its promises over) before the round
starts, and the next pass starts only after the round handed its outcomes
back, so this state needs no lock.
"""

import time

from zope.interface import implementer

from ..interfaces import IRequestFutures


@implementer(IRequestFutures)
class RequestFutures:
    """See IRequestFutures.

    ``resolved`` survives from pass to pass (and across Zope's ConflictError
    retries); ``pending`` holds what the current pass submitted.
    """

    def __init__(self):
        self.resolved = {}
        self.pending = {}
        self.rounds = 0
        self.started = time.monotonic()
        #: Set (to a reason) when the next pass must be a 503 instead.
        self.unavailable = None
        #: key -> core.fragments.Fragment submitted by this pass.
        self.fragments = {}
        #: The fragments' promises (key -> Promise) held for filling the
        #: holes of this pass's page, once it is committed (one pass).
        self.held = {}
        #: Progressive delivery asked for by the page: True, False, or None
        #: (the site's ``fragments_progressive``).
        self.progressive = None
        #: Fragments that ran as ordinary promises, in a round with others
        #: (the page took another pass): their keys.
        self.mixed = set()

    @property
    def passes(self):
        """Passes published so far, the current one included."""
        return self.rounds + 1

    def begin_pass(self):
        """A pass starts (or is retried): forget what was submitted before."""
        self.pending.clear()
        self.fragments.clear()
        self.held.clear()

    def take_pending(self):
        """Hand this pass's promises to a round; counts the round."""
        promises, self.pending = self.pending, {}
        self.mixed.update(key for key in promises if key in self.fragments)
        self.rounds += 1
        return promises

    def only_fragments(self):
        """True if this pass submitted promises and every one of them is
        a fragment's: the page needs no other pass."""
        return bool(self.pending) and all(
            key in self.fragments for key in self.pending)

    def hold_fragments(self):
        """Keep this pass's promises (all fragments') for filling the
        page's holes after the commit; none are pending any more."""
        self.held, self.pending = self.pending, {}
        return self.held

    def record(self, outcomes):
        """Store a finished round's outcomes (key -> :class:`Outcome`)."""
        self.resolved.update(outcomes)

    def summary(self):
        """``key [executor] 1.02s completed, ...`` for the request log."""
        return ", ".join(
            f"{key} [{o.executor or 'shared cache'}] "
            f"{'-' if o.seconds is None else f'{o.seconds:.3f}s'} "
            f"{o.kind if o.error is None else type(o.error).__name__}"
            for key, o in self.resolved.items())

    def __repr__(self):
        return (
            f"<RequestFutures pass={self.passes} "
            f"resolved={sorted(self.resolved)} pending={sorted(self.pending)}>"
        )
