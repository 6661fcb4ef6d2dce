"""The cyclic garbage collector, set for a long-running process: the server and each
media worker (media/worker.py).

With CPython's default thresholds the collector ran so often in the server that it took
a tenth of call-setup time, each call leaving reference cycles (call <-> legs, handlers
on transactions). In a media worker it stopped the world instead: a full collection
walked the 42,000 objects its imports had made, 20-50 ms each (seen in scale runs of
2026-12-06), every call's packets queued behind it, where a call that ends leaves next
to nothing for the collector (its objects are freed by reference counting).
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Once start-up is done: the objects alive then (modules, configuration) are never
    scanned again, and a collection waits for 50,000 more objects than were freed."""
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
