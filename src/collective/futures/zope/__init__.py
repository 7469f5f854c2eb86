"""Zope glue: the publisher events, the sandbox promises run in, startup,
named promises for templates and restricted code, the operators' views.

Everything here runs on a Zope worker thread (or, for ``startup``, the main
thread while Zope starts) except the sandbox's ``run``, which runs on the
executors' threads.
"""
