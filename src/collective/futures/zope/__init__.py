"""Zope glue: the publisher events, startup, named promises for templates
and restricted code, the operators' views.

Everything here runs on a Zope worker thread, or, for ``startup``, on the
main thread while Zope starts. Nothing else in the package imports it:
Zope reaches it through configure.zcml.
"""
