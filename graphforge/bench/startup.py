"""``graphforge bench startup``: how long the CLI takes to answer, against ``import torch``.

Each command runs in a fresh process (what a user waits for); the figure is the median of
``repeats`` runs, next to the median of ``python -c "import torch"`` measured in the same
run, so the ratio holds on a busy or a slow machine alike.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

COMMANDS: tuple[tuple[str, ...], ...] = (("--help",), ("--version",), ("list", "models"), ("plugins",),
                                         ("list", "models", "--json"))


def _seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True, timeout=600)
    return time.perf_counter() - start


def run_startup_benchmark(repeats: int = 5) -> list[dict[str, Any]]:
    """Median seconds of each CLI command and of ``import torch`` (fresh processes)."""
    torch_s = statistics.median(_seconds([sys.executable, "-c", "import torch"]) for _ in range(repeats))
    rows = [{"command": "python -c 'import torch'", "seconds": torch_s, "vs_import_torch": 1.0}]
    for args in COMMANDS:
        cmd = [sys.executable, "-m", "graphforge", *args]
        s = statistics.median(_seconds(cmd) for _ in range(repeats))
        rows.append({"command": "graphforge " + " ".join(args), "seconds": s, "vs_import_torch": s / torch_s})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`run_startup_benchmark`'s rows."""
    lines = ["| command | median seconds | / import torch |", "|---|---|---|"]
    lines += [f"| `{r['command']}` | {r['seconds']:.3f} | {r['vs_import_torch']:.2f} |" for r in rows]
    return "\n".join(lines)
