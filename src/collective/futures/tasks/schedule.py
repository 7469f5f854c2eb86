"""When periodic tasks fire: a schedule, and its slots.

Runs on: the thread that reads the configuration (``parse``), and the
scheduler thread (``Schedule.latest``). Pure: no I/O; times are seconds
since the epoch, in UTC.

A schedule is either cron's five fields (minute, hour, day of month,
month, day of week; ``*``, numbers, ``a-b`` ranges, ``*/n`` and ``a-b/n``
steps, comma lists; day of week 0-7, Sunday 0 or 7), in UTC, or
``@every N`` (every N seconds, at the multiples of N since the epoch),
or one of ``@hourly``, ``@daily``, ``@weekly``.

A *slot* is a time the schedule names. Every instance computes the same
slots; the task of a slot has an id made from the periodic task's name
and the slot (``slot_task_id``), so the queue keeps one task per slot
however many instances add it.
"""

import calendar
import hashlib
import time


_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31),
           ("month", 1, 12), ("day of week", 0, 7))
_ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0"}


class Schedule:
    """A parsed schedule (see the module's docstring)."""

    def __init__(self, text, every=None, fields=None):
        self.text = text
        self.every = every
        self.fields = fields

    def __repr__(self):
        return f"<Schedule {self.text!r}>"

    def latest(self, now, horizon=3600.0):
        """The latest slot at or before ``now`` and not older than
        ``horizon`` seconds, or None."""
        if self.every is not None:
            return float(int(now // self.every) * self.every)
        minute = int(now // 60) * 60
        for back in range(0, int(horizon // 60) + 1):
            candidate = minute - back * 60
            if self._matches(candidate):
                return float(candidate)
        return None

    def _matches(self, moment):
        t = time.gmtime(moment)
        minutes, hours, days, months, weekdays = self.fields
        weekday = (t.tm_wday + 1) % 7  # cron: Sunday 0
        day_ok = t.tm_mday in days
        weekday_ok = weekday in weekdays
        # cron: with both day fields restricted, either one matches.
        if len(days) < 31 and len(weekdays) < 7:
            day = day_ok or weekday_ok
        else:
            day = day_ok and weekday_ok
        return t.tm_min in minutes and t.tm_hour in hours and t.tm_mon in months and day


def parse(text):
    """A Schedule, or ValueError saying what is wrong."""
    source = str(text).strip()
    spec = _ALIASES.get(source, source)
    if spec.startswith("@every"):
        try:
            seconds = float(spec[len("@every"):].strip())
        except ValueError:
            raise ValueError(f"{source!r}: @every takes a number of seconds") from None
        if not 1 <= seconds <= 86400 * 366:
            raise ValueError(f"{source!r}: @every takes 1 to 31622400 seconds")
        return Schedule(source, every=seconds)
    parts = spec.split()
    if len(parts) != 5:
        raise ValueError(f"{source!r}: five fields (minute hour day month weekday), "
                         f"or @every N, @hourly, @daily, @weekly")
    fields = []
    for part, (name, low, high) in zip(parts, _FIELDS):
        values = set()
        for item in part.split(","):
            values |= _field_values(item, name, low, high, source)
        if name == "day of week" and 7 in values:
            values = (values - {7}) | {0}
        fields.append(frozenset(values))
    return Schedule(source, fields=tuple(fields))


def _field_values(item, name, low, high, source):
    base, _, step = item.partition("/")
    try:
        step = int(step) if step else 1
        if base == "*":
            start, end = low, high
        elif "-" in base:
            start, end = (int(v) for v in base.split("-", 1))
        else:
            start = end = int(base)
    except ValueError:
        raise ValueError(f"{source!r}: {item!r} is not {_a(name)}") from None
    if step < 1 or not low <= start <= end <= high:
        raise ValueError(f"{source!r}: {item!r} is not {_a(name)} ({low}-{high})")
    return set(range(start, end + 1, step))


def _a(name):
    return ("an " if name == "hour" else "a ") + name


class PeriodicTask:
    """A periodic task: ``path`` requested on ``queue`` (None: the first)
    at every slot of ``schedule`` (a Schedule). ``origin`` says where it
    was declared, for messages."""

    def __init__(self, name, schedule, path, queue=None, origin=""):
        self.name, self.schedule, self.path = name, schedule, path
        self.queue, self.origin = queue, origin

    def __repr__(self):
        return (f"<PeriodicTask {self.name!r} {self.schedule.text!r} {self.path!r}"
                f"{' on ' + self.queue if self.queue else ''}>")


def merge_periodic(declared, configured):
    """The periodic tasks to run: those ``declared`` (PeriodicTask, from
    ZCML), then ``configured`` ((name, schedule text, path), from
    zope.conf) over them: the operator's schedule and path win (the
    declared queue stays), and ``off`` removes a declared one. Returns
    (the tasks sorted by name, the names switched ``off`` that nothing
    declared: a typo, most likely)."""
    tasks = {task.name: task for task in declared}
    unknown = []
    for name, text, path in configured:
        if text == "off":
            if tasks.pop(name, None) is None:
                unknown.append(name)
        else:
            queue = tasks[name].queue if name in tasks else None
            tasks[name] = PeriodicTask(name, parse(text), path, queue,
                                       origin=f"task_periodic.{name}")
    return [tasks[name] for name in sorted(tasks)], unknown


def slot_task_id(name, slot):
    """The id of the task of periodic task ``name`` at ``slot``: the same
    on every instance."""
    return hashlib.sha256(f"periodic\0{name}\0{slot:.0f}".encode()).hexdigest()[:32]


def utc(year, month, day, hour=0, minute=0):
    """Seconds since the epoch of a UTC time (for tests and the docs)."""
    return float(calendar.timegm((year, month, day, hour, minute, 0)))
