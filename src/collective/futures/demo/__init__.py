"""The demo: a slow upstream on 127.0.0.1 and two pages that call it, one
through futures and one the blocking way. Loaded only by the demo instance
(``scripts/demo``), never by ``collective.futures``' own configure.zcml."""
