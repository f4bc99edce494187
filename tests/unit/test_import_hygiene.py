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


def test_help_does_not_build_settings() -> None:
    """`medloop --help` (issue 15: <= 0.6 s) needs typer and rich only; pydantic-settings and
    the records are half its import time and load when a command runs."""
    code = (
        "import sys, runpy\n"
        "sys.argv = ['medloop', '--help']\n"
        "try:\n    runpy.run_module('medloop', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print(','.join(m for m in ('pydantic_settings', 'medloop.core.records') if m in sys.modules),"
        " file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.strip() == "", f"imported by --help: {out.stderr.strip()}"


def test_a_sqlite_store_loads_neither_the_postgres_driver_nor_alembic(tmp_path: object) -> None:
    code = (
        "import sys\n"
        "from medloop.core.store import open_store\n"
        f"store = open_store({str(tmp_path)!r} + '/m.db')\n"
        "store.campaigns.list(); store.close(); open_store(" + repr(str(tmp_path)) + " + '/m.db').close()\n"
        "print(','.join(m for m in ('psycopg', 'alembic') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported for a SQLite store: {out.stdout.strip()}"
