"""Shared test setup: offline, quiet, one thread (the CI machine has 2 cores)."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import espnet_plugins  # noqa: E402,F401  (offline env + quiet imports before anything else)
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def repo_root() -> Path:
    return ROOT
