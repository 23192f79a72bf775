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


@pytest.fixture(scope="session")
def mini_run(tmp_path_factory):
    """Every stage of the dense mini recipe (synthesis included) in a temporary dir, run once
    per session and shared (test_recipe_mini, test_deploy*): (tmp dir, run.sh output).
    MINI_RUN_DIR=<dir> reuses a finished run there (its --datadir <dir>/data, --dumpdir
    <dir>/dump, --expdir <dir>/exp) while developing; ignored when CI is set."""
    from _helpers import require_tools, run

    reuse = os.environ.get("MINI_RUN_DIR")  # a developer's finished mini run (never set in CI)
    if reuse and not os.environ.get("CI"):
        return Path(reuse), ""
    require_tools("espeak-ng", "sox", "aspell", why="the mini recipe's corpus synthesis")
    tmp = tmp_path_factory.mktemp("mini")
    cmd = ["./run.sh", "--mini", "true", "--nj", "2", "--datadir", f"{tmp}/data", "--dumpdir", f"{tmp}/dump",
           "--expdir", f"{tmp}/exp"]
    res = run(cmd, cwd=ROOT / "egs" / "indic_synth" / "asr1", capture_output=True, text=True, timeout=1500)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return tmp, res.stdout + res.stderr
