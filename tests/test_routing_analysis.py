"""local/routing_analysis.py (stage 10) against hand-computed confusion counts and means."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("routing_analysis", ROOT / "local" / "routing_analysis.py")
routing = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(routing)


def _write(path: Path, rows: dict) -> None:
    path.write_text("".join(f"{k} {v}\n" for k, v in sorted(rows.items())), encoding="utf-8")


@pytest.fixture
def dirs(tmp_path):
    """One test set: two hi utterances (one misrouted to ta), one ta, one code-switched te+hi
    that the decoder skipped (no lang line); SMEAR gates for three of them."""
    data, dec = tmp_path / "raw" / "test_x", tmp_path / "decode" / "test_x"
    data.mkdir(parents=True)
    dec.mkdir(parents=True)
    _write(data / "utt2lang", {"u1": "hi", "u2": "hi", "u3": "ta", "u4": "te hi"})
    _write(dec / "lang", {"u1": "hi", "u2": "ta", "u3": "ta"})
    _write(dec / "route_frac", {"u1": "0.5 0.5 0 0", "u2": "1 0 0 0", "u3": "0 0 0.8 0.2", "u4": "0.25 0 0 0.75"})
    _write(dec / "smear_gate", {"u1": "0.1 0.9", "u2": "0.3 0.7", "u3": "1 0"})
    (tmp_path / "lang_list").write_text("hi\nmr\nta\nte\n")
    return tmp_path


def test_confusion_and_mean_shares_per_reference_language(dirs):
    res = routing.analyse(dirs / "raw" / "test_x", dirs / "decode" / "test_x", ["hi", "mr", "ta", "te"])
    assert res["num_utts"] == 4
    assert res["lid_confusion"] == {"hi": {"hi": 1, "ta": 1}, "hi+te": {"<none>": 1}, "ta": {"ta": 1}}
    assert res["route_frac"] == {"hi": [0.75, 0.25, 0.0, 0.0], "hi+te": [0.25, 0.0, 0.0, 0.75],
                                 "ta": [0.0, 0.0, 0.8, 0.2]}
    assert res["smear_gate"] == {"hi": [0.2, 0.8], "ta": [1.0, 0.0]}


def test_cli_writes_tables_json_and_heat_maps(dirs, monkeypatch, capsys):
    import matplotlib.image

    out = dirs / "routing"
    monkeypatch.setattr(sys, "argv", ["routing_analysis.py", "--decode_dir", str(dirs / "decode"), "--data_root",
                                      str(dirs / "raw"), "--test_sets", "test_x", "--lang_list",
                                      str(dirs / "lang_list"), "--out", str(out)])
    routing.main()
    md = (out / "routing.md").read_text(encoding="utf-8")
    assert "## test_x (4 utterances)" in md
    # languages of the lang_list first, in its order, then the rest
    assert "| ref | hi | ta | <none> |" in md and "| hi | 1 | 1 | 0 |" in md and "| hi+te | 0 | 0 | 1 |" in md
    assert "| ref | hi | mr | ta | te |" in md and "| hi | 0.75 | 0.25 | 0.00 | 0.00 |" in md
    assert "| ref | e0 | e1 |" in md and "| ta | 1.00 | 0.00 |" in md
    assert json.loads((out / "routing.json").read_text())["test_x"]["route_frac"]["hi+te"] == [0.25, 0.0, 0.0, 0.75]
    for png in ("expert_usage_test_x.png", "smear_gate_test_x.png"):
        image = matplotlib.image.imread(out / png)
        assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    assert md in capsys.readouterr().out
