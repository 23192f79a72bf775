"""The pipeline learns: speech -> fbank -> the mini model -> CTC -> greedy decoding -> CER.

Overfits 8 real espeak-ng utterances (2 languages) with conf/train_mini.yaml's model
and optimizer settings until greedy CTC transcribes them (char error rate below 30 %),
through the task's model builder, ESPnet's CTC and our greedy decoder and scorer. An
all-blank model (CTC's plateau) scores 100 % and fails. Needs espeak-ng and sox (the
install step guarantees both).
"""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch
from _helpers import require_tools

from espnet_plugins.inference.ctc_decoding import ctc_greedy
from espnet_plugins.tasks.asr import MoEASRTask

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = {
    "hi": ["नमस्ते दुनिया", "मेरा नाम राम है", "यह एक किताब है", "पानी ठंडा है"],
    "ta": ["வணக்கம் உலகம்", "என் பெயர் ராமன்", "இது ஒரு புத்தகம்", "தண்ணீர் குளிர்"],
}
TARGET_CER = 30.0
MAX_STEPS = 400


def _score_module():
    spec = importlib.util.spec_from_file_location("score", ROOT / "local" / "score.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("score", module)  # dataclasses look their module up there
    spec.loader.exec_module(sys.modules["score"])
    return sys.modules["score"]


@pytest.fixture(scope="module")
def utterances(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("learn")
    out = []
    for lang, texts in SENTENCES.items():
        for i, text in enumerate(texts):
            raw, wav = tmp / f"{lang}{i}_raw.wav", tmp / f"{lang}{i}.wav"
            require_tools("espeak-ng", "sox", why="synthesising the learning test's utterances")
            subprocess.run(["espeak-ng", "-v", lang, "-s", "160", "-w", str(raw), text], check=True, timeout=60)
            subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(wav)], check=True, timeout=60)
            audio, fs = sf.read(wav, dtype="float32")
            assert fs == 16000
            out.append((lang, text, torch.from_numpy(audio)))
    return out


def test_mini_model_learns_to_transcribe(utterances, tmp_path):
    chars = sorted({c for _, text, _ in utterances for c in text})
    tokens = ["<blank>", "<unk>"] + ["<space>" if c == " " else c for c in chars] + ["<sos/eos>"]
    (tmp_path / "tokens.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    (tmp_path / "langs").write_text("hi\nta\n", encoding="utf-8")
    args = MoEASRTask.get_parser().parse_args([
        "--config", str(ROOT / "conf" / "train_mini.yaml"), "--token_list", str(tmp_path / "tokens.txt"),
        "--lang_list", str(tmp_path / "langs"), "--normalize", "utterance_mvn", "--frontend_conf", "fs=16k"])
    torch.manual_seed(0)
    model = MoEASRTask.build_model(args)
    tok = {t: i for i, t in enumerate(tokens)}
    ids = [[tok["<space>" if c == " " else c] for c in text] for _, text, _ in utterances]
    speech = torch.nn.utils.rnn.pad_sequence([a for _, _, a in utterances], batch_first=True)
    speech_lengths = torch.tensor([len(a) for _, _, a in utterances])
    text = torch.nn.utils.rnn.pad_sequence([torch.tensor(x) for x in ids], batch_first=True, padding_value=-1)
    text_lengths = torch.tensor([len(x) for x in ids])
    optim = torch.optim.Adam(model.parameters(), lr=args.optim_conf["lr"])
    score = _score_module()

    def greedy_cer() -> float:
        model.eval()
        with torch.no_grad():
            enc, enc_lens = model.encode(speech, speech_lengths)
            hyps = ctc_greedy(model.ctc.log_softmax(enc), enc_lens)
        model.train()
        refs = [score.char_tokens(t) for _, t, _ in utterances]
        counts = score.per_utterance_counts(refs, [[tokens[i] for i in h] for h in hyps])
        return 100.0 * sum(c.errors for c in counts) / sum(c.ref for c in counts)

    start = greedy_cer()
    cer, step = start, 0
    model.train()
    while step < MAX_STEPS and cer >= TARGET_CER:
        for _ in range(50):
            loss, _, _ = model(speech=speech, speech_lengths=speech_lengths, text=text, text_lengths=text_lengths)
            optim.zero_grad()
            loss.backward()
            optim.step()
            step += 1
        cer = greedy_cer()
        print(f"update {step}: greedy CER {cer:.1f} %")
    assert cer < TARGET_CER, f"greedy CER {cer:.1f} % after {step} updates (start {start:.1f} %)"
