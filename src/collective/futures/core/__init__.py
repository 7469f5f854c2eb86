"""The pure core: promises and their outcomes, a request's futures, rounds,
shared promises, deadlines, metrics, response bodies and the runtime that
holds them together.

No Zope and no waitress is imported here (zope.interface, for the
contracts, is the one Zope-family library the core uses): everything is
testable in milliseconds with plain Python, fakes and injected clocks.
"""
