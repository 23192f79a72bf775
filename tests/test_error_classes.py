"""local/error_classes.py: edits filed under the right class, classes adding up to score.py's CER."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local"))
_spec = importlib.util.spec_from_file_location("error_classes", ROOT / "local" / "error_classes.py")
ec = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ec)


def _write(path: Path, lines) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_breakdown_by_class_and_language(tmp_path):
    data, dec = tmp_path / "data", tmp_path / "dec"
    _write(data / "text", [
        "h1 शान्ति है",   # hyp शांति है: न -> ं (nasal sign), ् deleted (virama); 9 ref chars
        "h2 क़लम",        # hyp कलम: nukta deleted (NFC keeps it a separate code point); 4 chars
        "t1 அ ஆ",         # hyp அஆ: <space> deleted (word boundary); 3 chars
        "t2 இ",           # hyp ஈ: other; 1 char
    ])
    _write(data / "utt2lang", ["h1 hi", "h2 hi", "t1 ta", "t2 ta"])
    _write(dec / "text", ["h1 शांति है", "h2 कलम", "t1 அஆ", "t2 ஈ"])
    table = ec.breakdown(data, dec)
    assert table["hi"]["ref"] == 13 and table["ta"]["ref"] == 4
    assert dict(table["hi"]["errors"]) == {"nasal sign": 1, "virama": 1, "nukta": 1}
    assert dict(table["ta"]["errors"]) == {"word boundary": 1, "other": 1}
    assert sum(table["overall"]["errors"].values()) == 5 and table["overall"]["ref"] == 17
    md = ec.to_markdown(table)
    # hi: 3 errors / 13 chars = 23.08 % CER, of which 7.69 points each for virama, nasal, nukta
    assert "| hi | 13 | 23.08 | 0.00 | 7.69 | 7.69 | 7.69 | 0.00 |" in md
    assert "| overall | 17 | 29.41 |" in md
