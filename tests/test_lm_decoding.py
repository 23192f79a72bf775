"""CTC beam search (pyctcdecode) with per-language KenLM n-grams: training tool, decoder,
mixture LM and the per-utterance LM choice of Speech2Text. The mini recipe's LM stage and
routed-LM decoding are in test_recipe_mini.py."""
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from _helpers import skip_or_fail

from espnet_plugins.inference.lm_decoding import CTCBeamDecoder

ROOT = Path(__file__).resolve().parents[1]
TOKENS = ["<blank>", "<unk>", "<space>", "a", "b", "c", "d", "<sos/eos>"]
ID = {t: i for i, t in enumerate(TOKENS)}


def _kenlm_bin() -> Path:
    for d in (Path(sys.executable).parent, *(Path(p).parent for p in [shutil.which("lmplz") or ""] if p)):
        if (d / "lmplz").is_file() and (d / "build_binary").is_file():
            return d
    skip_or_fail("KenLM's lmplz/build_binary are missing (tools/install.sh builds them into the venv)")


def _write(path: Path, lines) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    """Language 'xx' says 'ab ad', language 'yy' says 'cb cd': each knows only its own words."""
    d = tmp_path_factory.mktemp("lm")
    text, utt2lang = [], []
    for i in range(20):
        text += [f"x{i:02d} ab ad ab", f"y{i:02d} cb cd cb"]
        utt2lang += [f"x{i:02d} xx", f"y{i:02d} yy"]
    data = d / "data"
    data.mkdir()
    _write(data / "text", sorted(text))
    _write(data / "utt2lang", sorted(utt2lang))
    test = d / "test"
    test.mkdir()
    _write(test / "text", ["t1 ab ad dd", "t2 cb zz"])  # xx: 1 of 3 OOV; yy: 1 of 2
    _write(test / "utt2lang", ["t1 xx", "t2 yy"])
    out = d / "ngram"
    res = subprocess.run([sys.executable, str(ROOT / "local" / "train_ngram.py"), "--text", str(data / "text"),
                          "--utt2lang", str(data / "utt2lang"), "--order", "2", "--out_dir", str(out),
                          "--kenlm_bin", str(_kenlm_bin()), "--report_oov", f"test={test}"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return out


def _frames(*columns):
    """One frame per entry: a token (prob ~1) or {token: prob}; returns log-probs [T, V]."""
    lp = np.full((len(columns), len(TOKENS)), 1e-6)
    for t, col in enumerate(columns):
        for tok, p in (col.items() if isinstance(col, dict) else [(col, 1.0)]):
            lp[t, ID[tok]] = p
    lp /= lp.sum(1, keepdims=True)
    return np.log(lp).astype(np.float32)


# 'a' then 'b' or 'd' (equal), space, 'c'-ambiguous first letter of word 2 ...
AMBIGUOUS = _frames({"a": 0.5, "c": 0.5}, "<blank>", "b", "<blank>", "<space>",
                    {"a": 0.5, "c": 0.5}, "<blank>", "d", "<blank>")


def test_train_ngram_writes_one_lm_per_language_pooled_and_oov(lm_dir):
    info = yaml.safe_load((lm_dir / "lms.yaml").read_text())
    assert info["order"] == 2 and info["langs"] == ["xx", "yy"]
    assert info["lms"]["xx"]["sentences"] == 20 and info["lms"]["xx"]["words"] == 60
    assert info["lms"]["xx"]["vocabulary"] == 2 and info["lms"]["pooled"]["vocabulary"] == 4
    assert (lm_dir / "xx.unigrams").read_text().split() == ["ab", "ad"]
    for name in ("xx", "yy", "pooled"):
        assert (lm_dir / f"{name}.bin").stat().st_size > 0
    oov = info["oov"]["test"]
    assert oov["xx"] == {"words": 3, "oov_own": round(1 / 3, 4), "oov_pooled": round(1 / 3, 4)}
    assert oov["yy"]["oov_own"] == 0.5 and oov["all"] == {"words": 5, "oov_pooled": 0.4}


def test_train_ngram_user_text_replaces_a_language_and_rerun_skips(lm_dir, tmp_path):
    user = _write(tmp_path / "yy.txt", ["dd dd cb", "dd"])
    out = tmp_path / "ngram"
    cmd = [sys.executable, str(ROOT / "local" / "train_ngram.py"), "--text", str(lm_dir.parent / "data" / "text"),
           "--utt2lang", str(lm_dir.parent / "data" / "utt2lang"), "--lang_text", f"yy={user}",
           "--order", "2", "--out_dir", str(out), "--kenlm_bin", str(_kenlm_bin())]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    info = yaml.safe_load((out / "lms.yaml").read_text())
    assert info["lms"]["yy"]["source"] == str(user) and info["lms"]["yy"]["vocabulary"] == 2
    assert info["lms"]["pooled"]["vocabulary"] == 4  # ab ad + dd cb
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "exists, skipping" in again.stderr


def test_train_ngram_names_a_missing_lmplz(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_ngram", ROOT / "local" / "train_ngram.py")
    train_ngram = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_ngram)
    monkeypatch.setattr(train_ngram.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(train_ngram.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="lmplz not found .*tools/install.sh builds it"):
        train_ngram.find_tool("lmplz", str(tmp_path))


def test_beam_without_lm_sums_alignments_where_greedy_cannot():
    # Greedy: blank, blank -> "". Summed over alignments, "a" is likelier (0.4025 vs 0.16).
    lp = _frames({"<blank>": 0.4, "a": 0.35, "b": 0.25}, {"<blank>": 0.4, "a": 0.35, "b": 0.25})
    hyp = CTCBeamDecoder(TOKENS, beam_size=4).decode(lp)[0]
    assert hyp.text == "a" and hyp.lm_score is None


def test_language_lm_picks_its_own_spelling_and_mixture_follows_weights(lm_dir):
    dec = CTCBeamDecoder(TOKENS, str(lm_dir), beam_size=10, lm_weight=1.0, word_score=0.0, unk_score=-5.0)
    assert dec.langs == ["xx", "yy"] and set(dec.lm_names) == {"xx", "yy", "pooled"}
    assert dec.decode(AMBIGUOUS, "xx")[0].text == "ab ad"
    assert dec.decode(AMBIGUOUS, "yy")[0].text == "cb cd"
    assert dec.decode(AMBIGUOUS, {"xx": 0.9, "yy": 0.1})[0].text == "ab ad"
    assert dec.decode(AMBIGUOUS, {"xx": 0.1, "yy": 0.9})[0].text == "cb cd"
    assert dec.decode(AMBIGUOUS, {"xx": 0.0, "yy": 1.0})[0].text == "cb cd"
    with pytest.raises(ValueError, match="no LM 'zz'"):
        dec.decode(AMBIGUOUS, "zz")
    with pytest.raises(ValueError, match=r"no LM for \['zz'\]"):
        dec.decode(AMBIGUOUS, {"zz": 1.0})


def test_nbest_and_word_frames(lm_dir):
    dec = CTCBeamDecoder(TOKENS, beam_size=8, nbest=4, beam_prune_logp=-30.0)
    nbest = dec.decode(AMBIGUOUS)
    assert len(nbest) == 4 and len({h.text for h in nbest}) == 4
    assert [h.score for h in nbest] == sorted((h.score for h in nbest), reverse=True)
    assert {h.text for h in nbest} == {"ab ad", "ab cd", "cb ad", "cb cd"}  # all equally likely
    # word 1 spans frames 0-3 (a/c, blank, b), word 2 starts after the space at frame 4
    assert [(w, s) for w, s, _ in nbest[0].words] == [(nbest[0].text.split()[0], 0), (nbest[0].text.split()[1], 5)]
    assert nbest[0].words[0][2] == 3 and nbest[0].words[1][2] == 8
    with pytest.raises(ValueError, match="nbest=11 > beam_size=10"):
        CTCBeamDecoder(TOKENS, nbest=11, beam_size=10)


def test_mixture_lm_is_the_weighted_sum_of_probabilities(lm_dir):
    import kenlm
    from pygtrie import CharTrie

    from espnet_plugins.inference.mixture_lm import MixtureLM

    models = [kenlm.Model(str(lm_dir / f"{k}.bin")) for k in ("xx", "yy")]
    words = [set((lm_dir / f"{k}.unigrams").read_text().split()) for k in ("xx", "yy")]
    tries = [CharTrie.fromkeys(w) for w in words]
    mix = MixtureLM(models, words, tries, [0.75, 0.25], alpha=1.0, beta=0.0, unk_score_offset=-2.0)
    state = mix.get_start_state()
    score, state = mix.score(state, "ab")
    p_xx = 10 ** models[0].score("ab", bos=True, eos=False)
    p_yy = 10 ** (models[1].score("ab", bos=True, eos=False) - 2.0)  # OOV for yy: + offset
    assert math.isclose(score, math.log(0.75 * p_xx + 0.25 * p_yy), rel_tol=1e-5)
    # partial words: known to xx only -> log10(0.75 + 0.25 * 10^-2)
    assert math.isclose(mix.score_partial_token("a"), math.log10(0.75 + 0.25 * 0.01), rel_tol=1e-6)
    assert mix.score_partial_token("c") < mix.score_partial_token("a") < 0
    single = MixtureLM(models[:1], words[:1], tries[:1], [1.0], alpha=0.5, beta=1.0, unk_score_offset=-10.0)
    from pyctcdecode.language_model import LanguageModel

    stock = LanguageModel(models[0], words[0], alpha=0.5, beta=1.0, unk_score_offset=-10.0)
    for word, last in (("ad", False), ("dd", True)):
        ours, _ = single.score(single.get_start_state(), word, last)
        theirs, _ = stock.score(stock.get_start_state(), word, last)
        assert math.isclose(ours, theirs, rel_tol=1e-5), word


def _s2t_stub(lm_mode, langs=("xx", "yy"), allowed=None):
    """Speech2Text's LM choice without a model: only the attributes _lm_for reads."""
    from espnet_plugins.inference.speech2text import Speech2Text

    s2t = object.__new__(Speech2Text)
    s2t.lm_mode, s2t.langs, s2t.allowed_langs = lm_mode, list(langs), allowed
    s2t.beam_decoder = type("D", (), {"langs": ["xx", "yy"]})()
    return s2t


def test_speech2text_chooses_the_lm_per_utterance():
    post = [0.3, 0.7]
    assert _s2t_stub("none")._lm_for(post, None) is None
    assert _s2t_stub("pooled")._lm_for(post, None) == "pooled"
    assert _s2t_stub("xx")._lm_for(post, None) == "xx"
    assert _s2t_stub("routed")._lm_for(post, None) == "yy"
    assert _s2t_stub("routed", allowed=["xx"])._lm_for(post, None) == "xx"  # the prior limits the router
    assert _s2t_stub("mixed")._lm_for(post, None) == {"xx": 0.3, "yy": 0.7}
    assert _s2t_stub("mixed")._lm_for([0.995, 0.005], None) == {"xx": 1.0}  # < 1 % dropped
    assert _s2t_stub("oracle")._lm_for(post, ["xx"]) == "xx"
    assert _s2t_stub("oracle")._lm_for(post, ["yy", "xx"]) == {"xx": 0.5, "yy": 0.5}  # code-switched
    with pytest.raises(ValueError, match="needs each utterance's language"):
        _s2t_stub("oracle")._lm_for(post, None)
    with pytest.raises(ValueError, match="this model has no router"):
        _s2t_stub("routed")._lm_for(None, None)
    assert _s2t_stub("routed", allowed=["yy"])._lm_for(None, None) == "yy"


def test_reset_params_changes_every_lm(lm_dir):
    dec = CTCBeamDecoder(TOKENS, str(lm_dir), beam_size=10, lm_weight=1.0, word_score=0.0, unk_score=-5.0)
    assert dec.decode(AMBIGUOUS, "xx")[0].text == "ab ad"
    dec.reset_params(lm_weight=0.0, word_score=0.0, unk_score=0.0)  # LM off: acoustics tie, any spelling
    assert dec.decode(AMBIGUOUS, "xx")[0].score == pytest.approx(dec.decode(AMBIGUOUS)[0].score, abs=1e-4)
