"""The README's set-up as a new user runs it on a fresh Debian machine: `make serve`.

It installs the Debian packages the server runs (espeak-ng for spoken prompts,
libbcg729 for G.729) and none of the test peers, which are `make test`'s.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNTIME_PACKAGES = ["espeak-ng", "libbcg729-0"]


def _stub(path: Path, script: str) -> None:
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


def test_make_serve_installs_the_servers_runtime_packages_and_only_those(
    tmp_path: Path,
) -> None:
    """On a machine where dpkg knows no package, `make serve` asks apt-get for the two
    runtime packages, then starts the server (here a stand-in `ipbx` in a ready venv)."""
    bin_dir, venv = tmp_path / "bin", tmp_path / "venv"
    bin_dir.mkdir()
    (venv / "bin").mkdir(parents=True)
    apt_log, serve_log = tmp_path / "apt-get.log", tmp_path / "ipbx.log"
    _stub(bin_dir / "dpkg-query", "exit 1")
    _stub(bin_dir / "apt-get", f'echo "$*" >> {apt_log}')
    _stub(venv / "bin" / "ipbx", f'echo "$*" >> {serve_log}')
    (venv / ".installed").touch()  # newer than pyproject.toml: the venv is up to date
    done = subprocess.run(
        ["make", "-C", str(REPO_ROOT), "serve", f"VENV={venv}", "ARGS=--config x.yaml"],
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert apt_log.read_text().splitlines() == [
        "update -qq",
        f"install -y -qq --no-install-recommends {' '.join(RUNTIME_PACKAGES)}",
    ]
    assert serve_log.read_text().splitlines() == ["serve --config x.yaml"]
