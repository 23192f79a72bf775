"""run.sh's preset checks: router augmentation (stage 7) needs a language router; a
projector's gate (preencoder: smear_moe) is not one, but its routing is still analysed (stage 10)."""
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN_SH = ROOT / "egs" / "indic_synth" / "asr1" / "run.sh"


def _check(function: str, preset: str) -> bool:
    defs = [line for line in RUN_SH.read_text().splitlines() if line.startswith(("has_router()", "has_language_router()"))]
    assert len(defs) == 2, "run.sh should define has_router and has_language_router"
    script = "\n".join(defs) + f'\n{function} "$1"'
    return subprocess.run(["bash", "-c", script, "check", str(ROOT / "conf" / preset)], timeout=30).returncode == 0


@pytest.mark.parametrize("preset, language_router, analysed", [
    ("train_blr_moe.yaml", True, True),
    ("train_lr_moe.yaml", True, True),
    ("train_smear_blr_moe.yaml", True, True),
    ("train_frozen_smear.yaml", False, True),
    ("train_frozen_monolithic.yaml", False, True),
    ("train_dense_conformer.yaml", False, False),
])
def test_router_augmentation_only_for_a_language_router(preset, language_router, analysed):
    assert _check("has_language_router", preset) is language_router
    assert _check("has_router", preset) is analysed
