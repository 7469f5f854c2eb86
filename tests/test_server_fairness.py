"""server/fairness.py: the ResumeGate lets resumed requests into
waitress's task queue a few at a time."""

from collective.futures.server.fairness import ResumeGate


def test_the_resume_gate_lets_slots_resumed_requests_in_at_a_time():
    queued = []

    class Server:
        def add_task(self, channel):
            queued.append(channel)

    class Channel:
        server = Server()

    channels = [Channel() for _ in range(5)]
    gate = ResumeGate(slots=2)
    for channel in channels:
        gate.resume(channel)
    assert queued == channels[:2] and gate.waiting == 3
    gate.done()
    assert queued == channels[:3]
    for _ in range(4):
        gate.done()
    assert queued == channels and gate.waiting == 0
    unlimited = ResumeGate(slots=0)
    for channel in channels:
        unlimited.resume(channel)
    assert queued == channels * 2
