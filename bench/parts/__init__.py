"""The parts of `bench/run.py`, one module each: sip (register, calls), rtp, relay
(relay, transcode), integration (api) and memory; session holds what they share."""
