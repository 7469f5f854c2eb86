"""The side pools promises run on, one module per configuration name:
``threads`` (the default), ``processes`` and ``asyncio``; ``base`` is the
bounded pool the first two share. Each is an IBoundedExecutor.

Runs on: threads of their own, each named ``collective.futures-<name>-N``
(``collective.futures-asyncio`` for the loop); ``submit`` on any thread.
"""
