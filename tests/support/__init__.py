"""Helpers shared by the tests (and the benchmarks): data builders, servers, reference models."""
