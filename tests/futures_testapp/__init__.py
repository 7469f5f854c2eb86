"""Views the functional tests publish through a real Zope + waitress.

Loaded only by the test instances (their site.zcml includes it). The
counters live in the Zope process and are read back over HTTP.
"""
