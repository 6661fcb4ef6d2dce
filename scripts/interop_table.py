#!/usr/bin/env python3
"""Write docs/interop.md from the results of the last interop matrix run.

tests/interop/test_matrix.py writes build/interop-matrix.json (or $IPBX_INTEROP_RESULTS)
as it runs; this script turns it into the page users read:

    .venv/bin/pytest tests/interop/test_matrix.py
    .venv/bin/python scripts/interop_table.py [RESULTS.json] [-o docs/interop.md]

`cells_in_page(text)` reads the cells back from a page, for the test that checks the
page against the matrix's cell list.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "build" / "interop-matrix.json"
PAGE = REPO_ROOT / "docs" / "interop.md"

SYMBOLS = {"passed": "pass", "failed": "FAIL", "not run": "not run"}
INTRO = """\
# Interop matrix

Which phones are proven to talk to each other through ipbx. This page is the result of
the last run of `tests/interop/test_matrix.py`, written by `scripts/interop_table.py`
from the JSON that run leaves in `build/interop-matrix.json`; do not edit it by hand.

One ipbx serves the whole matrix, with music on hold; each peer registers once. A cell is
one call from the row's phone to the column's phone, through ipbx, that checks:
the call is answered; audio both ways, each side hearing the other's tone (every peer
sends its own frequency); RFC 4733 DTMF (1 5 #), sent by the caller, or by the callee when
the caller cannot send DTMF; hold and resume, by the caller (or the callee when the
caller cannot hold): the held side hears ipbx's music on hold, then the other's tone
again (an SRTP leg's hold is passed through end to end, so there the held side hears
the other again after the hold); and hang-up, alternating over the matrix between the
caller and the callee, the other side seeing the call end.

A step a peer cannot do is left out of its cells and named under "Every cell" with the
reason; a cell that is not run at all is listed under "Not in the matrix".

Set-up the matrix needs, as a user would: the extension of baresip with mandatory
SDES-SRTP (`mediaenc=srtp-mand`) has `srtp: required`, so that ipbx offers it SRTP over
UDP; `sip.qualify_interval` is an hour, because pyVoIP answers no OPTIONS and ipbx would
otherwise take it for gone 30 s after it registered and stop sending it calls.
"""


def _result(cell: dict[str, Any]) -> str:
    result = str(cell["result"])
    if result.startswith("fails: "):
        return result.removeprefix("fails: ")
    return SYMBOLS.get(result, result)


def render(results: dict[str, Any]) -> str:
    labels = {peer["key"]: peer["label"] for peer in results["peers"]}
    keys = list(labels)
    cells = {(c["caller"], c["callee"]): c for c in results["cells"]}
    outside = {(c["caller"], c["callee"]): c for c in results["cannot"]}
    lines = [INTRO, "## Matrix", "", "Rows call, columns answer.", ""]
    lines.append("| caller \\ callee | " + " | ".join(labels[k] for k in keys) + " |")
    lines.append("|---" * (len(keys) + 1) + "|")
    for caller in keys:
        row = []
        for callee in keys:
            if caller == callee:
                row.append("")
            elif (caller, callee) in cells:
                cell = cells[caller, callee]
                row.append(_result(cell) + ("*" if cell["left_out"] else ""))
            else:
                row.append("not in matrix")
        lines.append(f"| {labels[caller]} | " + " | ".join(row) + " |")
    lines += [
        "",
        "`*`: some steps left out, see below.",
        "",
        "## Every cell",
        "",
        "| caller | callee | result | DTMF from | hold by | hang-up by | left out | problems |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cell in results["cells"]:
        left_out = "; ".join(f"{step}: {why}" for step, why in cell["left_out"])
        lines.append(
            f"| {labels[cell['caller']]} | {labels[cell['callee']]} | {_result(cell)} | "
            f"{cell['dtmf_from'] or '-'} | {cell['hold_by'] or '-'} | {cell['hang_up_by']} | "
            f"{left_out or '-'} | {'; '.join(cell['problems']) or '-'} |"
        )
    lines += ["", "## Not in the matrix", "", "| caller | callee | reason |", "|---|---|---|"]
    for caller, callee in outside:
        reason = outside[caller, callee]["reason"]
        lines.append(f"| {labels[caller]} | {labels[callee]} | {reason} |")
    return "\n".join(lines) + "\n"


def cells_in_page(text: str) -> dict[str, dict[tuple[str, str], str]]:
    """The page's two lists, by (caller, callee) label: "run" gives each cell's steps
    left out, "not run" each cell's reason."""
    found: dict[str, dict[tuple[str, str], str]] = {"run": {}, "not run": {}}
    section = ""
    for line in text.splitlines():
        if line.startswith("## "):
            section = {"## Every cell": "run", "## Not in the matrix": "not run"}.get(line, "")
        elif section and line.startswith("| ") and not line.startswith("| caller |"):
            columns = [column.strip() for column in line.strip("|").split(" | ")]
            found[section][columns[0], columns[1]] = columns[6 if section == "run" else 2]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=RESULTS)
    parser.add_argument("-o", "--output", type=Path, default=PAGE)
    args = parser.parse_args()
    args.output.write_text(render(json.loads(args.results.read_text())))


if __name__ == "__main__":
    main()
