"""A view that runs the viewlet snippet of the README and docs/plone.rst
(a shared promise under a constant key, the feed's URL as argument) as it
is written, in a real Zope: loaded only by tests/test_functional_shared.py.
"""
