"""VLM test fixtures."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True, scope="module")
def _transformers_importable() -> None:
    # The segmentation job blocks `transformers` for the rest of its process (sys.modules
    # entry None, so MONAI skips it); a test that ran that job in this pytest process leaves
    # the block behind, and the VLM code here needs the real package.
    if "transformers" in sys.modules and sys.modules["transformers"] is None:
        del sys.modules["transformers"]
