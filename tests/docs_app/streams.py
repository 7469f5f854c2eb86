"""docs/streams.rst's example (snippet ``zip-export``): ``zip_export``
and ``ExportView``, as written (the URLs come from the context's items,
which the test makes: nothing to replace). configure.zcml registers
``ExportView``.

Runs on: a Zope worker thread (the view); zip_export on the side pool,
its members on the stream pool.
"""

from . import run_snippet


run_snippet("docs/streams.rst", "zip-export", globals())
