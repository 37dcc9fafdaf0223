"""Root pytest configuration, shared by the unit tests and nbval over chapters."""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"


def pytest_configure(config):
    # Tests and CI read the offline copies of the data sets (never committed here).
    if "LMBOOK_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
        os.environ["LMBOOK_DATA_DIR"] = str(SHARED_DATA)
