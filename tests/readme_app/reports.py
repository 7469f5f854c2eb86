"""The README's "A stream" (snippet ``status-report``): its
``status_report`` and ``StatusReport``, as written (the URLs come from
the folder's items; nothing to replace). configure.zcml registers
``@@status-report`` as the README says.

Runs on: a Zope worker thread (the view); status_report's rows on the
stream's side thread.
"""

from . import run_snippet


run_snippet("status-report", globals())
