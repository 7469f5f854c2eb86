"""A package declaring a periodic task in ZCML (``<futures:periodic>``),
for tests/test_functional_tasks.py; included only where a test asks."""
