"""The scale part: how the media plane grows with media workers (media.workers).

  scale_calls   Opus <-> PCMU calls transcoded through ipbx within the media limits
                (bench/media.py: loss, added jitter), ramped once with one media worker
                on one core and once with two workers on two cores: the calls carried by
                each, the calls per worker, and their ratio (the media issue's goal: two
                workers carry at least 1.8 times what one carries).

Each core carries its worker's share of the calls and of the load tool, since this
machine has no core to spare for the tool (bench/parts/relay.py's media_ramp, `spread`).
With one worker, the whole server and both sides of the load (the callers, and the
callees in a second process) run on the server's core, and the other core is idle; with
two, the second worker and the callees' side move to the other core. The tool costs a
core 0.12-0.15 % a call beside the server's 0.43-0.48 % (2026-12-06), so the per-core
figure is lower than a machine with cores for its load tools would show. Before
(until 2026-12-06), the generator had a core of its own with one worker and shared the
second worker's with two, which bound the ratio by what the generator left of that core
rather than by the workers (README).

Transcoding is the load that scales: a transcoded call costs the worker some twenty
times what the generator spends on it, where a relayed call costs them about the same.
"""

from __future__ import annotations

from bench import media
from bench.parts.relay import TRANSCODED, media_ramp
from bench.parts.session import Settings, emit, log

FIGURE = "scale_calls"
WORKERS = (1, 2)


def bench_scale(settings: Settings) -> bool:
    if settings.server_cpu is None or settings.sipp_cpu is None:
        log("scale: needs two cores to pin the workers and the load to")
        emit({"figure": FIGURE, "value": None, "error": "fewer than two cores"})
        return False
    cores = (settings.server_cpu, settings.sipp_cpu)
    carried: dict[int, int] = {}
    for workers in WORKERS:
        outcome = media_ramp(
            "ipbx",
            "transcode",
            settings.transcode_calls,
            settings,
            settings.out / "scale" / f"workers-{workers}",
            media_lines=[f"workers: {workers}"],
            spread=cores[:workers],
        )
        if outcome is None:
            emit({"figure": FIGURE, "workers": workers, "value": None, "error": "not started"})
            continue
        extra: dict[str, object] = {"workers": workers, "codecs": TRANSCODED}
        if outcome.best is not None:
            carried[workers] = outcome.best.calls
            extra["calls_per_worker"] = round(outcome.best.calls / workers, 1)
            extra["generator_cpu_pct"] = outcome.best.record.get("generator_cpu_pct")
        emit(media.figure(FIGURE, "ipbx", outcome, **extra))
    if len(carried) == len(WORKERS):
        ratio = round(carried[2] / carried[1], 3)
        log(f"  transcoded calls: {carried[1]} with one worker, {carried[2]} with two ({ratio}x)")
        emit({"figure": FIGURE, "ratio_2_to_1_workers": ratio})
    return len(carried) == len(WORKERS)
