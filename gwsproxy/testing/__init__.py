"""Tooling for tests and benchmarks: the pytest plugin, synthetic traffic, the example captures."""
