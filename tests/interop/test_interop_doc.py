"""docs/interop.md lists the cells of the interop matrix as tests/interop/test_matrix.py
has them: every cell it runs, with the steps left out and why, and every cell it does
not run, with the reason. A page left behind by a change of the matrix fails here; run
the matrix and scripts/interop_table.py to write it again."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from tests.interop.test_matrix import BY_KEY, CANNOT_CELLS, CELLS
from tests.support.processes import REPO_ROOT


def _interop_table() -> ModuleType:
    path = REPO_ROOT / "scripts" / "interop_table.py"
    spec = importlib.util.spec_from_file_location("interop_table", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_interop_lists_the_matrix_cells() -> None:
    page = _interop_table().cells_in_page((REPO_ROOT / "docs" / "interop.md").read_text())
    label = {key: peer.label for key, peer in BY_KEY.items()}
    run = {
        (label[cell.caller], label[cell.callee]): "; ".join(
            f"{step}: {why}" for step, why in cell.left_out
        )
        or "-"
        for cell in CELLS
    }
    not_run = {(label[caller], label[callee]): why for caller, callee, why in CANNOT_CELLS}
    assert page == {"run": run, "not run": not_run}
