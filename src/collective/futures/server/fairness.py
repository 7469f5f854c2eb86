"""Fairness between fresh requests and resumed ones.

Runs on: any thread (a lock guards the counts).

waitress has one FIFO task queue. When a burst of suspended requests
resumes at once (a popular slow upstream answers), their passes would all
be queued ahead of fresh requests, and a plain page would wait behind every
one of them. The gate lets at most ``slots`` resumed requests be queued or
served at a time (by default as many as waitress has threads); the others
wait here, in order, and enter waitress's queue one by one as earlier ones
finish. A fresh request then waits behind at most ``slots`` resumed passes.
"""

import collections
import threading
import weakref


class ResumeGate:
    def __init__(self, slots):
        self.slots = slots
        # Guards _active and _waiting.
        self._lock = threading.Lock()
        self._active = 0
        self._waiting = collections.deque()

    @property
    def waiting(self):
        return len(self._waiting)

    def resume(self, channel):
        """Queue ``channel.service()`` now, or when a slot frees."""
        with self._lock:
            if self.slots and self._active >= self.slots:
                self._waiting.append(channel)
                return
            self._active += 1
        channel.server.add_task(channel)

    def done(self):
        """A resumed request's pass is over: let the next one in."""
        with self._lock:
            channel = self._waiting.popleft() if self._waiting else None
            if channel is None:
                self._active -= 1
        if channel is not None:
            channel.server.add_task(channel)


_gates = weakref.WeakKeyDictionary()
_gates_lock = threading.Lock()


def gate_for(server, setting):
    """The gate of a waitress server; ``setting`` is ``resume_slots``."""
    with _gates_lock:
        gate = _gates.get(server)
        if gate is None:
            slots = server.adj.threads if setting == "auto" else int(setting)
            gate = _gates[server] = ResumeGate(slots)
        return gate
