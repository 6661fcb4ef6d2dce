"""Helpers the tests and the benchmarks share: peers to start, clients to drive them,
and an in-memory network to run the PBX and its phones on."""
