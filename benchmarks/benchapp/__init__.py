"""The benchmark's Zope views: the same upstream call done blocking, through
futures (thread and asyncio executors) and through the stream iterator.
Loaded by the benchmark's instances only."""
