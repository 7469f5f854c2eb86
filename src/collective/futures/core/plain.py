"""The one walk over a promise's arguments.

Runs on: the Zope worker, when a promise is submitted. Pure: what to refuse
is the caller's judgement (the sandbox refuses what belongs to the request;
``@@futures`` accepts plain data only); this module only walks containers,
with a bound on their depth so that nothing is left unchecked.
"""

#: Containers whose items (and a dict's keys) are walked.
CONTAINERS = (dict, list, tuple, set, frozenset)


def first_refused(values, judge, depth=8):
    """The first reason ``judge`` gives for a value in ``values``, walking
    into containers, or None when every value passes.

    ``judge(value)`` returns a reason (str) to refuse ``value``, or None to
    accept it; an accepted container is walked. A container nested deeper
    than ``depth`` is refused rather than left unchecked.
    """
    pending = [(value, 0) for value in values]
    while pending:
        value, level = pending.pop()
        reason = judge(value)
        if reason is not None:
            return reason
        if isinstance(value, CONTAINERS):
            if level >= depth:
                return f"arguments nest deeper than {depth} containers"
            if isinstance(value, dict):
                pending.extend((key, level + 1) for key in value)
                value = value.values()
            pending.extend((item, level + 1) for item in value)
    return None
