"""local/plot_expert_use.py: own-language expert share per language, ID vs pooled OOD, over seeds."""
import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, lines) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_expert_share_pools_ood_sets_skips_code_switching_and_averages_seeds(tmp_path):
    spec = importlib.util.spec_from_file_location("plot_expert_use", ROOT / "local" / "plot_expert_use.py")
    plot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot)
    data, langs = tmp_path / "dump", ["hi", "ta"]
    _write(tmp_path / "lang_list", langs)
    _write(data / "test_id" / "utt2lang", ["a hi", "b ta", "c hi ta"])
    _write(data / "test_ood_n" / "utt2lang", ["d hi", "e ta"])
    _write(data / "test_ood_r" / "utt2lang", ["f hi"])
    for seed, hi_own in ((1, 1.0), (2, 0.8)):
        dec = tmp_path / f"s{seed}"
        _write(dec / "test_id" / "route_frac", [f"a {hi_own} {1 - hi_own}", "b 0 1", "c 0.5 0.5"])
        _write(dec / "test_ood_n" / "route_frac", ["d 0.6 0.4", "e 0.1 0.9"])
        _write(dec / "test_ood_r" / "route_frac", ["f 0.2 0.8"])
    share = plot.expert_share(data, tmp_path / "s1", ["test_ood_n", "test_ood_r"], langs)
    np.testing.assert_allclose(share, [[0.4, 0.6], [0.1, 0.9]])  # hi: mean of d and f
    out = tmp_path / "use"
    assert plot.main(["--data_root", str(data), "--lang_list", str(tmp_path / "lang_list"), "--ood", "test_ood_n",
                      "test_ood_r", "--row", f"M={tmp_path / 's1'}+{tmp_path / 's2'}", "--out", str(out)]) == 0
    row = (out.with_suffix(".md")).read_text().splitlines()[-1]
    assert row == "| M | 2 | 0.90 ± 0.14 | 0.40 ± 0.00 | 1.00 ± 0.00 | 0.90 ± 0.00 |"  # c (hi+ta) left out
    assert out.with_suffix(".png").stat().st_size > 1000
