"""A site's own metrics endpoint: prometheus_client's HTTP server serving
its default registry, started at Zope startup by the manual's snippet
``metrics-endpoint`` (docs/operations.rst), on the port the test gives in
FUTURES_TEST_METRICS_PORT instead of the manual's 9464. For
tests/test_operations.py; included only where a test asks."""

import os

from doc_snippets import snippet, substituted


_namespace = {}
exec(substituted(snippet("docs/operations.rst", "metrics-endpoint"),
                 "9464", os.environ["FUTURES_TEST_METRICS_PORT"]), _namespace)

#: The snippet's subscriber, named in this package's configure.zcml.
serve_metrics = _namespace["serve_metrics"]
