"""core/state.py: what one request knows of its futures across passes."""

from zope.interface.verify import verifyObject

from collective.futures.core.promise import Outcome, Promise
from collective.futures.core.state import RequestFutures
from collective.futures.exceptions import FutureTimeoutError
from collective.futures.interfaces import IRequestFutures


def test_request_futures_provide_their_interface():
    assert verifyObject(IRequestFutures, RequestFutures())


def test_a_new_request_is_in_its_first_pass():
    state = RequestFutures()
    assert (state.resolved, state.pending, state.rounds, state.passes) == (
        {}, {}, 0, 1)
    assert state.unavailable is None
    assert isinstance(state.started, float)


def test_take_pending_hands_the_promises_over_and_counts_the_round():
    state = RequestFutures()
    promise = Promise("a", len)
    state.pending["a"] = promise
    taken = state.take_pending()
    assert taken == {"a": promise}
    assert state.pending == {} and (state.rounds, state.passes) == (1, 2)
    # What the round got is its own: the next pass starts afresh.
    second = Promise("b", len)
    state.pending["b"] = second
    assert taken == {"a": promise}
    assert state.take_pending() == {"b": second}
    assert (state.rounds, state.passes) == (2, 3)


def test_begin_pass_forgets_what_was_submitted_and_keeps_results():
    state = RequestFutures()
    state.record({"r": Outcome(value=1)})
    state.pending["p"] = Promise("p", len)
    state.begin_pass()
    assert state.pending == {} and state.resolved["r"].value == 1
    assert state.rounds == 0  # a retried pass is not a round


def test_record_merges_outcomes_across_rounds():
    state = RequestFutures()
    state.record({"a": Outcome(value=1)})
    state.record({"b": Outcome(value=2), "a": Outcome(value=3)})
    assert {k: o.value for k, o in state.resolved.items()} == {"a": 3, "b": 2}


def test_summary_names_each_result():
    state = RequestFutures()
    assert state.summary() == ""
    state.record({
        "a": Outcome(value=1, executor="threads", seconds=1.0234),
        "b": Outcome(error=FutureTimeoutError("t"), executor="processes",
                     seconds=2.0),
        "c": Outcome(value="kept"),
    })
    assert state.summary() == (
        "a [threads] 1.023s completed, "
        "b [processes] 2.000s FutureTimeoutError, "
        "c [shared cache] - completed")


def test_repr():
    state = RequestFutures()
    state.pending["p"] = Promise("p", len)
    state.record({"r": Outcome(value=1)})
    assert repr(state) == "<RequestFutures pass=1 resolved=['r'] pending=['p']>"
