"""local/score.py against hand-computed WER/CER, LID accuracy, RTF and RESULTS.md updates."""

import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from _helpers import run, skip_or_fail

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("score", ROOT / "local" / "score.py")
score = importlib.util.module_from_spec(_spec)
sys.modules["score"] = score  # dataclasses look their module up there
_spec.loader.exec_module(score)


def _write(path: Path, lines) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


@pytest.fixture
def sets(tmp_path):
    """Two test sets with hand-counted errors (see the comments for each utterance).

    Character tokens are code points with spaces as <space>, e.g. "a b" = a <space> b.
    """
    t1_ref, t1_dec = tmp_path / "data" / "t1", tmp_path / "exp" / "t1"
    _write(t1_ref / "text", [
        "a1 a b c d",          # hyp "a x c e f": words S2 I1 / 4; chars S2 I2 / 7
        "a2 Hello, World!",    # hyp "hello world": 0 errors after normalisation / 2 words, 11 chars
        "b1 p q",              # no hyp line: words D2 / 2; chars D3 / 3
        "b2 r",                # empty hyp: words D1 / 1; chars D1 / 1
        "c1 m n",              # hyp "m n o": words I1 / 2; chars I2 / 3
    ])
    _write(t1_ref / "utt2lang", ["a1 hi", "a2 hi", "b1 ta", "b2 ta", "c1 te hi"])
    _write(t1_dec / "text", ["a1 a x c e f", "a2 hello world", "b2", "c1 m n o"])
    # a1 right, a2 wrong, b1 missing (wrong), b2 right, c1 right (te is one of "te hi").
    _write(t1_dec / "lang", ["a1 hi", "a2 mr", "b2 ta", "c1 te"])
    (t1_dec / "rtf.json").write_text(json.dumps({"audio_seconds": 10.0, "decode_seconds": 2.0}))

    t2_ref, t2_dec = tmp_path / "data" / "t2", tmp_path / "exp" / "t2"
    _write(t2_ref / "text", ["d1 s t"])  # exact hyp: 2 words, 3 chars, no lang / rtf files
    _write(t2_ref / "utt2lang", ["d1 mr"])
    _write(t2_dec / "text", ["d1 s t"])
    return tmp_path, [f"t1={t1_ref}:{t1_dec}", f"t2={t2_ref}:{t2_dec}"]


def test_hand_counted_scores(sets, caplog):
    tmp_path, tests = sets
    out = score.main([*(a for t in tests for a in ("--test", t)), "--out_json", str(tmp_path / "s.json")])
    assert json.loads((tmp_path / "s.json").read_text()) == out
    t1 = out["test_sets"]["t1"]
    assert t1["num_utts"] == 5 and t1["missing_hyp"] == 1
    assert t1["words"] == {"ref": 11, "sub": 2, "del": 3, "ins": 2, "err": 7}
    assert t1["chars"] == {"ref": 25, "sub": 2, "del": 4, "ins": 4, "err": 10}
    assert t1["wer_pct"] == pytest.approx(700 / 11) and t1["cer_pct"] == pytest.approx(40.0)

    per_lang = t1["per_lang"]
    assert list(per_lang) == ["hi", "ta", "hi+te"]  # code-switched group after single languages
    assert per_lang["hi"]["words"]["err"] == 3 and per_lang["hi"]["wer_pct"] == pytest.approx(50.0)
    assert per_lang["hi"]["cer_pct"] == pytest.approx(400 / 18)
    assert per_lang["ta"]["wer_pct"] == pytest.approx(100.0) and per_lang["ta"]["cer_pct"] == pytest.approx(100.0)
    assert per_lang["ta"]["missing_hyp"] == 1
    assert per_lang["hi+te"]["wer_pct"] == pytest.approx(50.0)
    assert per_lang["hi+te"]["cer_pct"] == pytest.approx(200 / 3)

    assert t1["lid"] == {"acc_pct": pytest.approx(60.0), "correct": 3, "total": 5, "missing": 1}
    assert per_lang["hi+te"]["lid"]["acc_pct"] == 100.0 and per_lang["hi"]["lid"]["acc_pct"] == 50.0
    assert t1["rtf"]["rtf"] == pytest.approx(0.2)

    t2 = out["test_sets"]["t2"]
    assert t2["wer_pct"] == 0.0 and "lid" not in t2 and t2["rtf"] is None

    overall = out["overall"]  # micro-average: counts summed over both sets
    assert overall["num_utts"] == 6
    assert overall["wer_pct"] == pytest.approx(700 / 13) and overall["cer_pct"] == pytest.approx(1000 / 28)
    assert overall["lid"]["acc_pct"] == pytest.approx(60.0)  # only t1 has predictions
    assert overall["rtf"]["rtf"] == pytest.approx(0.2)
    assert set(overall["per_lang"]) == {"hi", "mr", "ta", "hi+te"}
    assert "no line in" in caplog.text and "b1" in caplog.text


def test_markdown_table(sets, capsys):
    _, tests = sets
    score.main([a for t in tests for a in ("--test", t)])
    table = capsys.readouterr().out.splitlines()
    assert table[0] == ("|test set|#utt|hi CER|hi WER|mr CER|mr WER|ta CER|ta WER|hi+te CER|hi+te WER"
                        "|CER|WER|LID acc|RTF|")
    assert table[2] == "|t1|5|22.2|50.0|-|-|100.0|100.0|66.7|50.0|40.0|63.6|60.0|0.2000|"
    assert table[3] == "|t2|1|-|-|0.0|0.0|-|-|-|-|0.0|0.0|-|-|"
    assert table[4] == "|overall|6|22.2|50.0|0.0|0.0|100.0|100.0|66.7|50.0|35.7|53.8|60.0|0.2000|"
    assert "|t1/ta|2|1|3|0|3|0|100.0|4|0|4|0|100.0|" in table


@pytest.fixture
def indic_set(tmp_path):
    """Indic references with hand-counted errors: conjuncts, vowel signs (matras), virama,
    nukta, a zero-width joiner. Character tokens are code points after NFC, e.g.
    "क्षत्रिय" = क ् ष त ् र ि य (8) and "தமிழ்" = த ம ி ழ ் (5)."""
    ref, dec = tmp_path / "data" / "indic", tmp_path / "exp" / "indic"
    _write(ref / "text", [
        "h1 क्षत्रिय राजा",            # 8 + <space> + 4 = 13 chars, 2 words
        "h2 \u0958\u093e\u0928\u0942\u0928",  # क़ानून with precomposed qa U+0958: NFC = क ़ ा न ू न, 6 chars
        "h3 ज्ञान",                    # ज ् ञ ा न: 5 chars
        "t1 தமிழ் நாடு",               # 5 + <space> + 4 = 10 chars, 2 words
        "t2 வணக்கம்",                   # வ ண க ் க ம ்: 7 chars
        "e1 స్వాతంత్ర్యం",              # స ్ వ ా త ం త ్ ర ్ య ం: 12 chars
    ])
    _write(ref / "utt2lang", ["e1 te", "h1 hi", "h2 hi", "h3 hi", "t1 ta", "t2 ta"])
    _write(dec / "text", [
        "h1 क्षत्रीय राज",             # matra ि -> ी (S1), final ा dropped (D1); both words wrong (S2)
        "h2 \u0915\u093c\u093e\u0928\u0942\u0928",  # the same word with a decomposed nukta: no error
        "h3 ज्\u200dञान",              # a zero-width joiner only changes rendering: no error
        "t1 தமிழ நாடு",                # virama ் dropped: D1; 1 of 2 words wrong (S1)
        "t2 வணக்கம் உலகம்",             # <space> + உ ல க ம ் inserted: I6; one word inserted (I1)
        "e1",                           # empty: D12, words D1
    ])
    return f"indic={ref}:{dec}"


def test_indic_graphemes_are_scored_per_code_point(indic_set):
    assert score.char_tokens(score.normalize_text("தமிழ் நாடு")) == ["த", "ம", "ி", "ழ", "்", "<space>", "ந", "ா", "ட", "ு"]
    out = score.main(["--test", indic_set])["test_sets"]["indic"]
    assert out["num_utts"] == 6 and out["missing_hyp"] == 0
    assert out["chars"] == {"ref": 53, "sub": 1, "del": 14, "ins": 6, "err": 21}
    assert out["words"] == {"ref": 8, "sub": 3, "del": 1, "ins": 1, "err": 5}
    per_lang = out["per_lang"]
    assert list(per_lang) == ["hi", "ta", "te"]
    assert per_lang["hi"]["chars"] == {"ref": 24, "sub": 1, "del": 1, "ins": 0, "err": 2}
    assert per_lang["hi"]["words"] == {"ref": 4, "sub": 2, "del": 0, "ins": 0, "err": 2}
    assert per_lang["ta"]["chars"] == {"ref": 17, "sub": 0, "del": 1, "ins": 6, "err": 7}
    assert per_lang["ta"]["words"] == {"ref": 3, "sub": 1, "del": 0, "ins": 1, "err": 2}
    assert per_lang["te"]["chars"] == {"ref": 12, "sub": 0, "del": 12, "ins": 0, "err": 12}
    assert out["cer_pct"] == pytest.approx(2100 / 53) and per_lang["hi"]["cer_pct"] == pytest.approx(200 / 24)


def test_indic_markdown_rows(indic_set, capsys):
    score.main(["--test", indic_set])
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "|test set|#utt|hi CER|hi WER|ta CER|ta WER|te CER|te WER|CER|WER|LID acc|RTF|"
    assert table[2] == "|indic|6|8.3|50.0|41.2|66.7|100.0|100.0|39.6|62.5|-|-|"
    assert "|indic/ta|2|0|3|1|0|1|66.7|17|0|1|6|41.2|" in table


def test_a_set_smaller_than_its_data_dir_is_reported(sets, caplog):
    """--data_dir: utterances of the original data dir missing from the scored reference
    (a filtered or stale copy) are counted in the log, scores.json and RESULTS.md."""
    tmp_path, tests = sets
    data = tmp_path / "orig" / "t1"
    _write(data / "wav.scp", [f"{u} /x/{u}.wav" for u in ("a1", "a2", "b1", "b2", "c1", "z7", "z8")])
    md = tmp_path / "RESULTS.md"
    out = score.main(["--test", tests[0], "--test", tests[1], "--data_dir", f"t1={data}", "--results_md", str(md),
                      "--tag", "x"])
    t1 = out["test_sets"]["t1"]
    assert t1["num_utts"] == 5 and t1["data_dir_utts"] == 7 and t1["unscored_utts"] == 2
    assert "unscored_utts" not in out["test_sets"]["t2"]  # no --data_dir: nothing claimed
    assert "t1: NOT SCORED WHOLE: 2 of the 7 utterances of" in caplog.text and "z7, z8" in caplog.text
    text = md.read_text(encoding="utf-8")
    assert f"- **t1 not scored whole**: 5 of the 7 utterances of `{data}` (2 not in `{tmp_path / 'data' / 't1'}`" in text
    assert "t2 not scored whole" not in text
    # the whole set: no note
    _write(data / "wav.scp", [f"{u} /x/{u}.wav" for u in ("a1", "a2", "b1", "b2", "c1")])
    score.main(["--test", tests[0], "--data_dir", f"t1={data}", "--results_md", str(md), "--tag", "x"])
    assert "not scored whole" not in md.read_text(encoding="utf-8")
    with pytest.raises(SystemExit):
        score.main(["--test", tests[0], "--data_dir", f"t9={data}"])


def test_bad_decode_files_name_file_and_line(sets, capsys):
    tmp_path, tests = sets
    hyp = tmp_path / "exp" / "t1" / "text"
    hyp.write_text(hyp.read_text() + "zz9 extra\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        score.main(["--test", tests[0]])
    assert f"{hyp}:5: utterance 'zz9' is not in the reference" in capsys.readouterr().err

    lang = tmp_path / "exp" / "t2" / "lang"
    _write(lang, ["d1 mr hi"])
    with pytest.raises(score.ScoringError, match=rf"{lang}:1: expected 'uttid predicted_lang'"):
        score.score_test_set("t2", *tests[1].split("=", 1)[1].split(":"))
    with pytest.raises(score.ScoringError, match="exactly one ':'"):
        score.parse_test_spec("t1=a")


def test_results_md_section_is_replaced_not_duplicated(sets):
    tmp_path, tests = sets
    md = tmp_path / "RESULTS.md"
    md.write_text("# RESULTS\n\nHand-written notes stay.\n", encoding="utf-8")
    common = [a for t in tests for a in ("--test", t)] + ["--results_md", str(md), "--num_threads", "2"]
    model = tmp_path / "valid.loss.ave.pth"
    torch.save({"w": torch.zeros(1000, 3), "b": torch.zeros(5)}, model)
    score.main(common + ["--tag", "model_a", "--config", "conf/a.yaml", "--seed", "3", "--model_file", str(model),
                         "--model_info", "encoder=blr_moe"])
    score.main(common + ["--tag", "model_b"])
    first = md.read_text(encoding="utf-8")
    assert "- config: `conf/a.yaml`" in first and "- seed: `3`" in first and "- encoder: `blr_moe`" in first
    assert "- model size: `0.00 M (3,005)`" in first
    assert "torch threads: 2" in first and f"torch {importlib.metadata.version('torch')}" in first and "- command: `local/score.py --test t1=" in first

    # Change a hypothesis and rerun model_a: its section is updated in place, the rest untouched.
    _write(tmp_path / "exp" / "t2" / "text", ["d1 s"])
    score.main(common + ["--tag", "model_a", "--command", "./run.sh --stage 9"])
    second = md.read_text(encoding="utf-8")
    assert second.count("section begin: model_a") == 1 and second.count("section begin: model_b") == 1
    assert second.startswith("# RESULTS\n\nHand-written notes stay.\n")
    assert second.index("## model_a") < second.index("## model_b")  # position kept
    section_a = second.split("section begin: model_a")[1].split("section end: model_a")[0]
    assert "|t2|1|-|-|66.7|50.0|" in section_a and "- command: `./run.sh --stage 9`" in section_a
    assert "- config:" not in section_a  # the header is rebuilt from the new command's options
    assert second.split("section begin: model_b")[1] == first.split("section begin: model_b")[1]


def test_cli_subprocess(sets):
    tmp_path, tests = sets
    proc = run([sys.executable, str(ROOT / "local" / "score.py"), "--test", tests[1]],
               capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "|t2|1|0.0|0.0|0.0|0.0|-|-|" in proc.stdout


def _fake_scores(exp: Path, id_chars, ood_chars) -> None:
    """scores.json with given (ref, err) char counts for hi on test_id and two OOD sets."""
    def part(ref, err, lid=None):
        d = {"words": {"ref": ref // 5, "err": err // 5}, "chars": {"ref": ref, "err": err}}
        if lid:
            d["lid"] = {"correct": lid[0], "total": lid[1]}
        return d

    sets = {"test_id": dict(part(*id_chars, lid=(9, 10)), per_lang={"hi": part(*id_chars)}, rtf={"rtf": 0.02})}
    for name, c in zip(("test_ood_noise", "test_ood_tel"), ood_chars):
        sets[name] = dict(part(*c, lid=(5, 10)), per_lang={"hi": part(*c)})
    (exp / "decode_ctc_greedy").mkdir(parents=True)
    (exp / "decode_ctc_greedy" / "scores.json").write_text(json.dumps({"test_sets": sets}))


def test_compare_results_mean_and_sd_over_seeds_per_condition(tmp_path):
    spec = importlib.util.spec_from_file_location("compare_results", ROOT / "local" / "compare_results.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    a, b = tmp_path / "exp_a", tmp_path / "exp_b"
    _fake_scores(a, (100, 10), [(100, 20), (300, 40)])  # OOD pooled: 60 / 400 = 15 %
    _fake_scores(b, (100, 20), [(100, 30), (300, 50)])  # OOD pooled: 80 / 400 = 20 %
    text = compare.table([("A", (a,), "ctc_greedy"), ("B", (b,), "ctc_greedy")], {a: (6.0, 3.8), b: (3.6, 3.6)})
    header = next(line for line in text.splitlines() if line.startswith("|model|")).split("|")
    assert header[6:9] == ["noise", "tel", "OOD pooled"]
    row_a = dict(zip(header, next(line for line in text.splitlines() if line.startswith("|A|")).split("|")))
    assert row_a["seeds"] == "1" and row_a["params M (total / active)"] == "6.00 / 3.80"
    assert row_a["test_id CER"] == "10.0" and row_a["noise"] == "20.0" and row_a["tel"] == "13.3"
    assert row_a["OOD pooled"] == "15.0" and row_a["LID ID"] == "90.0" and row_a["LID OOD"] == "50.0"
    assert row_a["cs"] == "-" and row_a["RTF"] == "0.0200"
    # two seeds: each cell the mean ± sample sd of the runs' rates (not pooled counts)
    text = compare.table([("AB", (a, b), "ctc_greedy")], {a: (6.0, 3.8)}, ood_exclude=("test_ood_tel",))
    row = dict(zip(header, next(line for line in text.splitlines() if line.startswith("|AB|")).split("|")))
    assert row["seeds"] == "2" and row["test_id CER"] == "15.0 ± 7.1" and row["noise"] == "25.0 ± 7.1"
    assert row["OOD pooled"] == "25.0 ± 7.1"  # tel left out of the pool: noise alone
    # bench_rtf's figure measured alone, for the rows whose default decoding it timed
    rtf = tmp_path / "rtf.json"
    rtf.write_text(json.dumps({"exps": {"b": str(b)}, "rtf": {"b": 0.0123}}))
    alone = compare.rtf_alone(rtf)
    shutil.copytree(b / "decode_ctc_greedy", b / "decode_ctc_greedy_prior")  # a decode-time variant of b
    text = compare.table([("A", (a,), "ctc_greedy"), ("B", (b,), "ctc_greedy"), ("Bp", (b,), "ctc_greedy_prior")],
                         {a: (6.0, 3.8), b: (3.6, 3.6)}, alone=alone)
    cells = {line.split("|")[1]: line.split("|")[-2] for line in text.splitlines()[2:]}
    assert text.splitlines()[0].endswith("|RTF|RTF alone|") and cells == {"A": "-", "B": "0.0123", "Bp": "-"}
    assert compare.language_table([("AB", (a, b), "ctc_greedy")]).splitlines()[2] == "|AB|15.0 ± 7.1|-|-|-|"
    rel = compare.relative_table(["A|B|id=-50,ood|paper: better"], {"A": ((a,), "ctc_greedy"), "B": ((b,), "ctc_greedy")},
                                 data_root=None)
    assert "|A vs B|id|10.00|20.00|-50.0 %|-|-50.00 %|" in rel and "|A vs B|ood|15.00|20.00|-25.0 %|" in rel
    assert rel.rstrip().endswith("paper: better|")
    with pytest.raises(ValueError, match="test_ood_x"):
        compare.scope_sets("test_ood_x", ["test_id", "test_ood_noise"], ())
    assert compare.parse_claim("A|B|all=-16.09,ood|t") == ("A", "B", {"all": -16.09, "ood": None}, "t")
    assert compare.parse_claim("A|B|all=-3.2..-7.3|t")[2] == {"all": (-7.3, -3.2)}
    ranged = compare.relative_table(["A|B|id=-60..-40|r"], {"A": ((a,), "ctc_greedy"), "B": ((b,), "ctc_greedy")},
                                    data_root=None)
    assert "|A vs B|id|10.00|20.00|-50.0 %|-|-60.00..-40.00 %|" in ranged


def test_compare_results_bootstraps_claims_from_decode_dirs(tmp_path):
    """With the hypotheses (--data_root), a claim gets an interval and a verdict."""
    compare = _compare_module()
    refs = {f"u{i}": "अबक खगघ" for i in range(12)}
    for name in ("test_id", "test_ood_noise"):
        _write(tmp_path / "dump" / name / "text", [f"{u} {t}" for u, t in refs.items()])
    for exp, wrong in (("exp_a1", 1), ("exp_a2", 1), ("exp_b1", 4), ("exp_b2", 5)):
        for name in ("test_id", "test_ood_noise"):
            hyp = [f"{u} {'x' * wrong}{t[wrong:]}" for u, t in refs.items()]
            _write(tmp_path / exp / "decode_ctc_greedy" / name / "text", hyp)
            d = {"chars": {"ref": 96, "err": 12 * wrong}, "words": {"ref": 24, "err": 12}}
        (tmp_path / exp / "decode_ctc_greedy" / "scores.json").write_text(
            json.dumps({"test_sets": {"test_id": d, "test_ood_noise": d}}))
    rows = {"A": ((tmp_path / "exp_a1", tmp_path / "exp_a2"), "ctc_greedy"),
            "B": ((tmp_path / "exp_b1", tmp_path / "exp_b2"), "ctc_greedy")}
    rel = compare.relative_table(["A|B|all=-10,id=-78|paper"], rows, tmp_path / "dump", resamples=200)
    all_row = next(line for line in rel.splitlines() if line.startswith("|A vs B|all|")).split("|")
    assert all_row[3:5] == ["14.29", "64.29"]  # 1 vs 4.5 (mean of the seeds) of 7 chars per utterance
    assert all_row[5].startswith("-77.8 %") and all_row[6] == "0.000"
    assert "A better; the claimed -10.0 % is outside the 95 % interval" in all_row[8]


def test_training_curves_parse_espnet_epoch_lines(tmp_path):
    spec = importlib.util.spec_from_file_location("training_curves", ROOT / "local" / "training_curves.py")
    curves = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(curves)
    log = tmp_path / "train.log"
    log.write_text(
        "[vm] x INFO: 1epoch:train:1-19batch: loss=3.0\n"
        "[vm] x (trainer:394) INFO: 1epoch results: [train] loss_ctc=214.6, gate_entropy=1.380, "
        "time=3 minutes and 49.82 seconds, total_count=394, [valid] loss_ctc=226.5, cer_ctc=0.993, "
        "gate_entropy=1.370, loss_att=nan, time=10.88 seconds\n"
        "[vm] x (trainer:394) INFO: 2epoch results: [train] gate_entropy=0.9, [valid] cer_ctc=0.5, gate_entropy=0.8\n")
    parsed = curves.parse_log(log)
    assert parsed[1]["train"] == {"loss_ctc": 214.6, "gate_entropy": 1.38, "total_count": 394.0}
    assert parsed[1]["valid"]["cer_ctc"] == 0.993 and parsed[2]["valid"]["gate_entropy"] == 0.8
    md = curves.markdown({"smear": parsed}, ["gate_entropy", "cer_ctc", "absent"])
    assert "| 1 | 1.380 | 1.370 |" in md and "| 2 | 0.500 |" in md and "absent" not in md


def test_training_curves_per_update_and_over_seeds(tmp_path):
    """--per_update: interval lines laid end to end over epochs (a resumed epoch's repeat wins);
    a run of several logs: mean ± sd over the logs that have the point."""
    spec = importlib.util.spec_from_file_location("training_curves", ROOT / "local" / "training_curves.py")
    curves = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(curves)
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("x INFO: 1epoch:train:1-10batch: gate_entropy=1.0, loss=5\n"
                 "x INFO: 1epoch:train:11-20batch: gate_entropy=0.8\n"
                 "x INFO: 2epoch:train:1-10batch: gate_entropy=9.9\n"  # stopped, then resumed:
                 "x INFO: 2epoch:train:1-10batch: gate_entropy=0.6\n"
                 "x INFO: 1epoch results: [train] gate_entropy=0.9\n")
    b.write_text("x INFO: 1epoch:train:1-10batch: gate_entropy=1.2\n"
                 "x INFO: 1epoch:train:11-20batch: gate_entropy=0.6\n")
    pa, pb = curves.parse_intervals(a), curves.parse_intervals(b)
    assert {x: v["train"]["gate_entropy"] for x, v in pa.items()} == {10: 1.0, 20: 0.8, 30: 0.6}
    md = curves.markdown({"smear": [pa, pb]}, ["gate_entropy"], "update")
    assert "| update | smear (train, 2 seeds) |" in md
    assert "| 10 | 1.100 ± 0.141 |" in md and "| 20 | 0.700 ± 0.141 |" in md and "| 30 | 0.600 |" in md
    out = tmp_path / "curves"
    curves.plot({"smear": [pa, pb]}, ["gate_entropy"], out.with_suffix(".png"), "update")
    assert out.with_suffix(".png").stat().st_size > 1000


def _compare_module():
    spec = importlib.util.spec_from_file_location("compare_results", ROOT / "local" / "compare_results.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    return compare


def test_compare_results_reads_back_what_stage_9_wrote_to_results_md(sets):
    """--from_results_md: the counts rebuilt from a RESULTS.md section equal scores.json's."""
    tmp_path, tests = sets
    md = tmp_path / "RESULTS.md"
    out = score.main([*(a for t in tests for a in ("--test", t)), "--results_md", str(md),
                      "--tag", "run1 / ctc_greedy"])
    compare = _compare_module()
    sections = compare.results_md_sections(md)
    assert list(sections) == ["run1 / ctc_greedy"]
    back = compare.scores_from_section(sections["run1 / ctc_greedy"])
    for name in ("t1", "t2"):
        want = out["test_sets"][name]
        for unit in ("words", "chars"):
            assert back[name][unit] == {"err": want[unit]["err"], "ref": want[unit]["ref"]}
            for lang, part in want["per_lang"].items():
                assert back[name]["per_lang"][lang][unit] == {"err": part[unit]["err"], "ref": part[unit]["ref"]}
    assert back["t1"]["lid"] == {"correct": 3, "total": 5} and "lid" not in back["t2"]
    want_cer = out["test_sets"]["t1"]["chars"]["err"] / out["test_sets"]["t1"]["chars"]["ref"]
    assert back["t1"]["rtf"] == {"rtf": 0.2} and "hi+te" in back["t1"]["per_lang"]
    # the table built from RESULTS.md: t1 is no test_id/test_ood set, so the ID and OOD cells stay empty
    compare._SOURCE["results_md"] = sections
    (fig,) = compare.row_figures((Path("run1"),), "ctc_greedy")["runs"]
    assert fig["cer"]["t1"] == pytest.approx(100 * want_cer) and fig["cer"]["ood"] is None
    assert fig["cer"].get("test_id") is None and fig["rtf"] is None


def test_compare_results_active_parameters_from_the_runs_config():
    compare = _compare_module()
    text = "- config: `/another/checkout/conf/{}`\n- model size: `6.12 M (6,000,000)`\n"
    total, active = compare.param_counts_from_section(text.format("train_blr_moe.yaml"), ["hi", "mr", "ta", "te"])
    assert total == 6.0 and 2.0 < total - active < 2.5  # 3 of 4 experts idle per frame
    total, active = compare.param_counts_from_section(text.format("train_dense_conformer.yaml"), ["hi"])
    assert total == active == 6.0


def _section(tag: str) -> str:
    return f"{score._marker(tag, 'begin')}\n## {tag}\n\nbody of {tag}\n{score._marker(tag, 'end')}\n"


def _hold_lock_then_write(md, locked, release):
    """Another recipe run, caught between its read and its write of RESULTS.md."""
    import fcntl

    fd = os.open(md.parent, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    text = md.read_text(encoding="utf-8")  # read ...
    locked.set()
    release.wait(60)
    score.atomic_write_text(md, text + _section("holder"))  # ... modify, write: loses what came in between
    os.close(fd)


def _waits_for_flock(pid: int, directory: Path) -> bool:
    """Whether process ``pid`` is blocked in flock() on ``directory`` (Linux lists every
    waiting lock request in /proc/locks with ``->``: ``1: -> FLOCK ADVISORY WRITE <pid>
    <major>:<minor>:<inode> 0 EOF``)."""
    inode = str(directory.stat().st_ino)
    for line in Path("/proc/locks").read_text().splitlines():
        f = line.split()
        if "->" in f:
            i = f.index("->")
            if f[i + 1:i + 2] == ["FLOCK"] and f[i + 4:i + 5] == [str(pid)] and f[i + 5].split(":")[-1] == inode:
                return True
    return False


def test_results_md_writers_running_at_once_keep_every_section(tmp_path):
    """Parallel recipe runs score into one RESULTS.md: each waits for the directory lock,
    so no run's read-modify-write drops a section another run wrote in between.

    Deterministic, no timing assumptions: while one run holds the lock (it has read the file and will
    write it back), a second run must be seen blocked in flock() by the kernel; with a
    lock that does nothing it writes at once instead, which this test reports."""
    if not Path("/proc/locks").is_file():
        skip_or_fail("needs Linux /proc/locks to see a waiting flock")
    import multiprocessing
    import time

    md = tmp_path / "RESULTS.md"
    md.write_text("# RESULTS\n", encoding="utf-8")
    ctx = multiprocessing.get_context("fork")
    locked, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock_then_write, args=(md, locked, release))
    holder.start()
    try:
        assert locked.wait(60), "the lock-holding process did not start"
        waiting = ctx.Process(target=score.update_results_md, args=(md, "late", _section("late")))
        waiting.start()
        deadline = time.monotonic() + 60
        while not _waits_for_flock(waiting.pid, tmp_path):
            assert waiting.is_alive(), ("update_results_md wrote RESULTS.md while another run held the lock: "
                                        "it does not lock, so parallel runs lose sections")
            assert time.monotonic() < deadline, "update_results_md neither waited for the lock nor finished in 60 s"
            time.sleep(0.01)
    finally:
        release.set()
    for p in (holder, waiting):
        p.join(60)
        assert p.exitcode == 0
    text = md.read_text(encoding="utf-8")
    assert "body of holder\n" in text and "body of late\n" in text, text

    writers = [ctx.Process(target=score.update_results_md, args=(md, f"run{i}", _section(f"run{i}")))
               for i in range(8)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
        assert w.exitcode == 0
    text = md.read_text(encoding="utf-8")
    for tag in ["holder", "late"] + [f"run{i}" for i in range(8)]:
        assert text.count(score._marker(tag, "begin")) == 1 and f"body of {tag}\n" in text
    assert not list(tmp_path.glob(".RESULTS.md.*"))  # no temporary files left


def test_compare_results_seed_plot_draws_each_seed_and_the_mean(tmp_path, monkeypatch):
    """--seed_plot: one dot per seed at that seed's CER, coloured by the seed in the dir name,
    and a mean bar, for test_id and OOD pooled."""
    import matplotlib.axes

    compare = _compare_module()
    s1, s2 = tmp_path / "asr_x_s1", tmp_path / "asr_x_s2"
    _fake_scores(s1, (100, 10), [(100, 20), (300, 40)])
    _fake_scores(s2, (100, 20), [(100, 30), (300, 50)])
    drawn = []
    real_plot = matplotlib.axes.Axes.plot

    def spy(self, *args, **kwargs):
        drawn.append((self.get_title(), args, kwargs.get("color")))
        return real_plot(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    png = tmp_path / "plots" / "cer_per_seed.png"
    compare.seed_plot([("X", (s1, s2), "ctc_greedy")], png, ood_exclude=("test_ood_tel",))
    assert png.stat().st_size > 1000
    dots = [(args[0], color) for _, args, color in drawn if len(args) == 3 and args[2] == "o" and args[0] != []]
    assert dots == [(10.0, "C1"), (20.0, "C2"), (20.0, "C1"), (30.0, "C2")]  # test_id, then OOD (noise only)
    means = [args[0] for _, args, _ in drawn if len(args) == 3 and args[2] == "k-" and args[0]]
    assert means == [[15.0, 15.0], [25.0, 25.0]]


def test_compare_results_wer_table_per_condition_over_seeds(tmp_path):
    """--wer_md: WER of each test set and of the OOD pool (words summed over the pooled sets
    per seed), mean ± sd over the row's seeds; a set a row lacks shows '-'."""
    compare = _compare_module()
    a, b = tmp_path / "asr_x_s1", tmp_path / "asr_x_s2"
    _fake_scores(a, (100, 10), [(100, 20), (300, 40)])  # words: id 2/20, noise 4/20, tel 8/60
    _fake_scores(b, (100, 20), [(100, 30), (300, 50)])  # words: id 4/20, noise 6/20, tel 10/60
    text = compare.wer_table([("X", (a, b), "ctc_greedy"), ("Y", (a,), "ctc_greedy")], ood_exclude=("test_ood_tel",))
    lines = text.splitlines()
    header = lines[0].split("|")
    assert header[1:-1] == ["model", "seeds", "test_id", "noise", "tel", "OOD pooled", "cs"]
    x = dict(zip(header, lines[2].split("|")))
    assert x["seeds"] == "2" and x["test_id"] == "15.0 ± 7.1" and x["noise"] == "25.0 ± 7.1"
    assert x["tel"] == "15.0 ± 2.4" and x["cs"] == "-"
    assert x["OOD pooled"] == "25.0 ± 7.1"  # tel is a column but left out of the pool
    y = dict(zip(header, lines[3].split("|")))
    assert y["seeds"] == "1" and y["test_id"] == "10.0" and y["OOD pooled"] == "20.0"
