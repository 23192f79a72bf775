"""The recipe's decoding configs through the public CLI (espnet_plugins.bin.asr_inference)."""
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from test_language_prior import _args, _save

from espnet_plugins.bin import asr_inference

CONF = Path(__file__).resolve().parents[1] / "egs" / "indic_synth" / "asr1" / "conf"


def _lines(path):
    return [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def test_decode_ctc_beam_yaml_writes_text_and_nbest_and_agrees_with_greedy_on_peaked_posteriors(tmp_path):
    """decode_ctc_beam.yaml (prefix beam, no LM, 5-best) and decode_ctc_greedy.yaml on the
    same utterances: a model with sharply peaked CTC posteriors has one dominant path, so
    the beam's 1-best must be the greedy output; the n-best list starts with it."""
    config, checkpoint = _save(tmp_path, "dense", _args())
    state = torch.load(checkpoint)
    state["ctc.ctc_lo.weight"] *= 30.0  # peaked posteriors, varied tokens
    torch.save(state, checkpoint)
    rng = np.random.default_rng(0)
    scp = []
    for i, n in enumerate((9600, 6400, 12000)):
        wav = tmp_path / f"u{i}.wav"
        sf.write(wav, (rng.standard_normal(n) * 0.1).astype(np.float32), 16000)
        scp.append(f"u{i} {wav}\n")
    (tmp_path / "wav.scp").write_text("".join(scp))
    texts = {}
    for name in ("decode_ctc_greedy", "decode_ctc_beam"):
        out = tmp_path / name
        asr_inference.main(["--config", str(CONF / f"{name}.yaml"), "--asr_train_config", config,
                            "--asr_model_file", checkpoint, "--data_path_and_name_and_type",
                            f"{tmp_path}/wav.scp,speech,sound", "--output_dir", str(out)])
        texts[name] = {u: t for u, _, t in (line.partition(" ") for line in _lines(out / "text"))}
        assert sorted(texts[name]) == ["u0", "u1", "u2"]
    assert texts["decode_ctc_beam"] == texts["decode_ctc_greedy"]
    assert any(t.strip() for t in texts["decode_ctc_greedy"].values())  # not the empty-output decoder
    nbest = [line.split(" ", 3) for line in _lines(tmp_path / "decode_ctc_beam" / "nbest")]
    firsts = {u: " ".join(rest[1:]) if len(rest) > 1 else "" for u, rank, *rest in nbest if rank == "1"}
    assert {u: f.strip() for u, f in firsts.items()} == {u: t.strip() for u, t in texts["decode_ctc_beam"].items()}
    per_utt = {u: sum(1 for v, *_ in nbest if v == u) for u in texts["decode_ctc_beam"]}
    assert all(1 <= k <= 5 for k in per_utt.values()), per_utt
