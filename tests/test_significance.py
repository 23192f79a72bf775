"""local/significance.py: the seed x utterance bootstrap behind the accuracy table's verdicts."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "local"))
import significance  # noqa: E402


def _errors(seeds, rate, ref, rng):
    return rng.binomial(ref.astype(int)[None, :].repeat(seeds, 0), rate).astype(float)


def test_a_clearly_better_is_detected_and_equal_systems_are_not():
    rng = np.random.default_rng(1)
    ref = rng.integers(20, 80, 300).astype(float)
    b = _errors(3, 0.10, ref, rng)
    better = significance.relative_change(_errors(3, 0.05, ref, rng), b, ref, resamples=500)
    assert -60 < better["relative_pct"] < -40 and better["ci95"][1] < 0 and better["p_a_not_better"] < 0.01
    assert significance.verdict(better, claimed_pct=-50.0).startswith("A better; the claimed -50.0 % is inside")
    same = significance.relative_change(_errors(3, 0.10, ref, rng), b, ref, resamples=500)
    assert same["ci95"][0] < 0 < same["ci95"][1] and 0.05 < same["p_a_not_better"] < 0.95
    assert significance.verdict(same, claimed_pct=-16.1).startswith("no significant difference; the claimed -16.1 % is outside")
    # a range claim (a paper's gains over several conditions): overlap, not containment
    low, high = same["ci95"]
    assert "-30.0..-20.0 % range lies outside" in significance.verdict(same, claimed_pct=(-30.0, -20.0))
    assert "range overlaps" in significance.verdict(same, claimed_pct=(low - 5, low + 0.1))


def test_seed_variance_widens_the_interval():
    """Two systems whose seeds disagree: resampling seeds must widen the interval over what
    the utterances alone give (one seed per system)."""
    rng = np.random.default_rng(2)
    ref = rng.integers(20, 80, 300).astype(float)
    a = np.stack([_errors(1, r, ref, rng)[0] for r in (0.06, 0.10, 0.14)])
    b = np.stack([_errors(1, r, ref, rng)[0] for r in (0.08, 0.10, 0.12)])
    wide = significance.relative_change(a, b, ref, resamples=500)
    narrow = significance.relative_change(a[1:2], b[1:2], ref, resamples=500)
    assert wide["ci95"][1] - wide["ci95"][0] > 2 * (narrow["ci95"][1] - narrow["ci95"][0])
    assert "one seed" in significance.verdict(narrow) and "one seed" not in significance.verdict(wide)


def test_cli_scores_like_score_py(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "text").write_text("u1 ab cd\nu2 efg\n", encoding="utf-8")
    for name, lines in (("a", "u1 ab cd\nu2 efg\n"), ("b", "u1 abcd\nu2 ef\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "text").write_text(lines, encoding="utf-8")
    errors, ref = significance.utterance_errors(data, [tmp_path / "b"])
    assert ref.tolist() == [5.0, 3.0] and errors.tolist() == [[1.0, 1.0]]  # the space is a char
    assert significance.main(["--data_dir", str(data), "--a", str(tmp_path / "a"), "--b", str(tmp_path / "b"),
                              "--resamples", "200", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "CER A 0.00 %" in out and "CER B 25.00 %" not in out and "B 25.00 %" in out and "-100.0 %" in out


def test_word_unit_counts_word_errors(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "text").write_text("u1 ab cd\nu2 efg\n", encoding="utf-8")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "text").write_text("u1 abcd\nu2 efg\n", encoding="utf-8")
    errors, ref = significance.utterance_errors(data, [tmp_path / "b"], unit="word")
    # "ab cd" -> "abcd": one substitution + one deletion; "efg" right
    assert ref.tolist() == [2.0, 1.0] and errors.tolist() == [[2.0, 0.0]]
    assert significance.main(["--data_dir", str(data), "--a", str(data), "--b", str(tmp_path / "b"),
                              "--resamples", "200", "--unit", "word"]) == 0
    assert "WER A 0.00 %" in capsys.readouterr().out
