"""core/plain.py: the one walk over a promise's arguments."""

from collective.futures.core.plain import first_refused


class Marked:
    pass


def refuse_marked(value):
    return "a Marked" if isinstance(value, Marked) else None


def nested(levels, leaf="leaf"):
    for _ in range(levels):
        leaf = [leaf]
    return leaf


def test_every_value_passes():
    values = (1, "a", [1, (2, {"k": {3, frozenset({4})}})], None)
    assert first_refused(values, refuse_marked) is None
    assert first_refused((), refuse_marked) is None


def test_a_refused_value_anywhere_is_found():
    assert first_refused((Marked(),), refuse_marked) == "a Marked"
    assert first_refused((1, [2, (3, Marked())]), refuse_marked) == "a Marked"
    assert first_refused(({"k": [Marked()]},), refuse_marked) == "a Marked"


def test_dict_keys_are_walked_too():
    class Key(Marked):
        def __hash__(self):
            return 1

    assert first_refused(({Key(): "value"},), refuse_marked) == "a Marked"


def test_sets_are_walked():
    class Item(Marked):
        def __hash__(self):
            return 2

    assert first_refused(({Item()},), refuse_marked) == "a Marked"
    assert first_refused((frozenset({Item()}),), refuse_marked) == "a Marked"


def test_depth_bound():
    # depth containers inside one another pass; one more is refused rather
    # than left unchecked.
    assert first_refused((nested(3),), refuse_marked, depth=3) is None
    assert first_refused((nested(4),), refuse_marked, depth=3) == (
        "arguments nest deeper than 3 containers")
    assert first_refused((nested(8),), refuse_marked) is None
    assert "deeper than 8" in first_refused((nested(9),), refuse_marked)
    deep_dict = {"a": {"b": {"c": 1}}}
    assert first_refused((deep_dict,), refuse_marked, depth=2) is not None
    assert first_refused((deep_dict,), refuse_marked, depth=3) is None


def test_the_judge_short_circuits():
    judged = []

    def judge(value):
        judged.append(value)
        if isinstance(value, tuple):
            return "a tuple"
        return None

    inner = ("never", "judged")
    assert first_refused(([inner],), judge) == "a tuple"
    # The refused container is not walked into, and the walk stops there.
    assert "never" not in judged and judged[-1] is inner


def test_a_container_the_judge_refuses_is_not_walked():
    # A judge that refuses containers by type (subclasses, say) decides
    # before anything inside is looked at.
    class MyList(list):
        pass

    def judge(value):
        if type(value) is MyList:
            return "a MyList"
        if isinstance(value, Marked):
            return "a Marked"
        return None

    assert first_refused((MyList([Marked()]),), judge) == "a MyList"
