"""The scale part: how the media plane grows with media workers (media.workers).

  scale_calls   Opus <-> PCMU calls transcoded through ipbx within the media limits
                (bench/media.py: loss, added jitter), ramped once with one media worker
                and once with two: the calls carried by each, the calls per worker, and
                their ratio (the media issue's goal: two workers carry at least 1.8 times
                what one carries). With one worker the whole server (SIP and the worker) is
                pinned to the server's core and the generator has the other; with two, the
                server runs on both cores and the generator stays on its own, so on a
                two-core machine the second worker shares its core with the generator,
                whose CPU each step prints: on such a machine the ratio is bound by what
                the generator leaves. A bigger machine's run compares per worker.

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
    carried: dict[int, int] = {}
    for workers in WORKERS:
        outcome = media_ramp(
            "ipbx",
            "transcode",
            settings.transcode_calls,
            settings,
            settings.out / "scale" / f"workers-{workers}",
            media_lines=[f"workers: {workers}"],
            pinned=workers == 1,
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
