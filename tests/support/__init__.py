"""Helpers the tests and the benchmarks share: peers to start, clients to drive them."""
