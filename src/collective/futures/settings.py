"""Configuration: one table, one object.

The options live in ``<product-config collective.futures>`` in zope.conf,
where every value arrives as a string. :data:`OPTIONS` is the single source
of truth: the README's table is checked against it by the test suite.
"""

import dataclasses
import math

from .exceptions import ConfigurationError


def _positive_int(value):
    number = int(value)
    if number < 1:
        raise ValueError("must be 1 or more")
    return number


def _passes(value):
    number = int(value)
    if number < 2:
        raise ValueError("must be 2 or more (pass 1 submits, pass 2 renders)")
    return number


def _seconds(value):
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError("must be a positive number of seconds")
    return number


_TRUE = {"on", "true", "yes", "1"}
_FALSE = {"off", "false", "no", "0"}


def _boolean(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("must be on or off")


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    convert: object
    default: object
    doc: str


OPTIONS = (
    Option(
        "max_workers", _positive_int, 32,
        "Threads in the side pool that runs promises, shared by all "
        "requests. Promises beyond it wait in the pool's queue.",
    ),
    Option(
        "timeout", _seconds, 30.0,
        "Seconds a promise may take, counted from the end of the pass that "
        "submitted it (queueing included). Past it, ``result()`` raises "
        "``FutureTimeoutError`` in the next pass.",
    ),
    Option(
        "max_passes", _passes, 3,
        "Most passes one request may take, the final render included: 2 "
        "allows one round of promises, 3 allows dependent lookups.",
    ),
    Option(
        "suspend", _boolean, True,
        "``on``: under waitress, free the worker thread while promises run. "
        "``off``: always wait in the worker (the mode used under other "
        "servers and test browsers).",
    ),
)

_BY_NAME = {option.name: option for option in OPTIONS}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Validated settings. Build with :meth:`from_mapping`."""

    max_workers: int = 32
    timeout: float = 30.0
    max_passes: int = 3
    suspend: bool = True

    @classmethod
    def from_mapping(cls, mapping=None):
        """Validate ``mapping`` (strings or values) into Settings.

        An unknown key or a bad value raises :class:`ConfigurationError`
        naming it.
        """
        values = {}
        for key, raw in (mapping or {}).items():
            option = _BY_NAME.get(key)
            if option is None:
                raise ConfigurationError(
                    f"<product-config collective.futures>: unknown key "
                    f"{key!r}; known keys: {', '.join(sorted(_BY_NAME))}"
                )
            try:
                values[key] = option.convert(raw)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(
                    f"<product-config collective.futures>: bad value "
                    f"{raw!r} for {key!r}: {exc}"
                ) from exc
        return cls(**values)


# The dataclass defaults and the table must agree; fail at import if not.
assert {o.name: o.default for o in OPTIONS} == dataclasses.asdict(Settings())
