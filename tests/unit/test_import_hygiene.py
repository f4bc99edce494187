"""The orchestrator must start without loading torch or monai."""

from __future__ import annotations

import subprocess
import sys


def test_cli_import_does_not_load_torch_or_monai() -> None:
    code = (
        "import sys, medloop.cli, medloop.bootstrap\n"
        "heavy = sorted(m for m in ('torch', 'monai', 'chromadb', 'litellm', 'langgraph')"
        " if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported at start-up: {out.stdout.strip()}"
