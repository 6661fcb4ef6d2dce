"""No source file over 700 lines and no class over 400 (docs/architecture.md): past that
a module does several jobs, and a newcomer reads it whole to change one."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ipbx"
MAX_FILE_LINES = 700
MAX_CLASS_LINES = 400


def test_no_source_file_over_700_lines() -> None:
    sizes = {path: len(path.read_text().splitlines()) for path in SRC.rglob("*.py")}
    too_long = {str(p.relative_to(SRC)): n for p, n in sizes.items() if n > MAX_FILE_LINES}
    assert too_long == {}


def test_no_class_over_400_lines() -> None:
    too_long = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    too_long[f"{path.relative_to(SRC)}:{node.name}"] = lines
    assert too_long == {}
