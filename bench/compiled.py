"""The runner's bytecode, written once before a benchmark measures it, as installing it does: under
PYTHONDONTWRITEBYTECODE (set on some machines) every timed run would compile the runner's changed
modules again, a cost no installed runner pays."""

from __future__ import annotations

import compileall
from pathlib import Path

RUNNER = Path(__file__).resolve().parent.parent / "runner"


def compile_runner() -> None:
    compileall.compile_dir(RUNNER, quiet=1)
