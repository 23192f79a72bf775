"""Faults during training: NaN/inf steps are skipped and counted, kill -9 resumes."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from _helpers import kill_group, run
from espnet2.asr.ctc import CTC

from espnet_plugins.asr.encoder.blr_moe_encoder import BLRMoEEncoder
from espnet_plugins.asr.espnet_model import MoEASRModel

LANGS = ["hi", "mr"]
VOCAB = ["<blank>", "<unk>", "a", "b", "<sos/eos>"]


def _tiny_model() -> MoEASRModel:
    torch.manual_seed(0)
    enc = BLRMoEEncoder(input_size=8, output_size=16, attention_heads=2, linear_units=16, num_shared_blocks=1,
                        num_moe_blocks=1, langs=LANGS, router_channels=8, input_layer="linear")
    return MoEASRModel(vocab_size=len(VOCAB), token_list=VOCAB, frontend=None, specaug=None, normalize=None,
                       preencoder=None, encoder=enc, postencoder=None, decoder=None, ctc=CTC(len(VOCAB), 16),
                       joint_network=None, ctc_weight=1.0, langs=LANGS)


def _batch(nan: bool = False):
    g = torch.Generator().manual_seed(1)
    speech = torch.randn(2, 12, 8, generator=g)
    if nan:
        speech[1, 3, 2] = float("nan")
    return dict(speech=speech, speech_lengths=torch.tensor([12, 9]),
                text=torch.tensor([[2, 3, 2], [3, -1, -1]]), text_lengths=torch.tensor([3, 1]),
                lang=torch.tensor([[0], [1]]), lang_lengths=torch.tensor([1, 1]))


def test_nan_batch_restores_batchnorm_statistics_and_is_counted(caplog):
    from espnet_plugins.train.trainer import NonFiniteGuard

    model = _tiny_model().train()
    guard = NonFiniteGuard(model.forward, model)  # MoETrainer wraps every training forward so
    guard(**_batch())  # one clean step moves the running statistics away from their init
    bn = [k for k in model.state_dict() if "running_mean" in k]
    assert bn, "the test model must have BatchNorm running statistics"
    before = {k: v.clone() for k, v in model.state_dict().items()}

    loss, stats, _ = guard(**_batch(nan=True))

    assert not torch.isfinite(loss)
    assert stats["nonfinite_step"] == 1.0 and guard.num_nonfinite_steps == 1
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert "non-finite training loss" in caplog.text and "1 such steps" in caplog.text
    # What ESPnet's trainer then does: the gradient norm is not finite, so no step.
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    assert not torch.isfinite(grad_norm)

    loss, stats, _ = guard(**_batch())
    assert torch.isfinite(loss) and stats["nonfinite_step"] == 0.0


def test_eval_forward_reports_no_nonfinite_stat():
    model = _tiny_model().eval()
    with torch.no_grad():
        _, stats, _ = model(**_batch())
    assert "nonfinite_step" not in stats


# ---------------------------------------------------------------- real training runs
CONFIG = """\
frontend: default
frontend_conf: {n_fft: 512, win_length: 400, hop_length: 160, n_mels: 20, fs: 16k}
normalize: null
encoder: blr_moe
encoder_conf: {output_size: 16, attention_heads: 2, linear_units: 16, num_shared_blocks: 1,
               num_moe_blocks: 1, router_channels: 8, cnn_module_kernel: 5}
decoder: none
model: moe_espnet
model_conf: {ctc_weight: 1.0}
optim: adam
optim_conf: {lr: 0.005}
batch_type: unsorted
batch_size: 2
num_workers: 0
best_model_criterion: [[valid, loss, min]]
keep_nbest_models: 1
num_att_plot: 0
use_preprocessor: true
token_type: char
cleaner: none
g2p: none
seed: 3
"""


def _data_dir(root: Path, n: int, nan_utt: int = -1, subtype: str = "PCM_16") -> Path:
    """n one-second utterances (noise + tone), two languages; one may hold NaN samples.

    ``subtype="FLOAT"``: float wavs, which ESPnet's ``kaldi_ark`` loader (kaldiio) reads
    on the same [-1, 1] scale as the ``sound`` loader reads 16-bit ones."""
    d = root / "data"
    (d / "wav").mkdir(parents=True)
    rng = np.random.default_rng(0)
    wav, text, lang = [], [], []
    for i in range(n):
        utt = f"utt{i:03d}"
        t = np.arange(16000) / 16000
        x = 0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t) + 0.05 * rng.standard_normal(16000)
        path = d / "wav" / f"{utt}.wav"
        if i == nan_utt:
            x[4000:4100] = np.nan
            sf.write(path, x.astype(np.float32), 16000, subtype="FLOAT")
        else:
            sf.write(path, x, 16000, subtype=subtype)
        wav.append(f"{utt} {path}")
        text.append(f"{utt} {'ab'[i % 2]} {'ba'[i % 3 % 2]} a")
        lang.append(f"{utt} {LANGS[i % 2]}")
    (d / "wav.scp").write_text("\n".join(wav) + "\n")
    (d / "text").write_text("\n".join(text) + "\n")
    (d / "utt2lang").write_text("\n".join(lang) + "\n")
    (d / "shape").write_text("".join(f"utt{i:03d} 16000\n" for i in range(n)))
    (root / "tokens.txt").write_text("\n".join(["<blank>", "<unk>", "a", "b", "<sos/eos>"]) + "\n")
    (root / "lang_list").write_text("\n".join(LANGS) + "\n")
    (root / "config.yaml").write_text(CONFIG)
    return d


def _train_cmd(root: Path, d: Path, out: Path, max_epoch: int, speech_type: str = "sound"):
    data = []
    for split in ("train", "valid"):
        data += [f"--{split}_data_path_and_name_and_type", f"{d}/wav.scp,speech,{speech_type}",
                 f"--{split}_data_path_and_name_and_type", f"{d}/text,text,text",
                 f"--{split}_data_path_and_name_and_type", f"{d}/utt2lang,lang,text",
                 f"--{split}_shape_file", f"{d}/shape"]
    return [sys.executable, "-m", "espnet_plugins.bin.asr_train", "--config", str(root / "config.yaml"),
            "--token_list", str(root / "tokens.txt"), "--lang_list", str(root / "lang_list"),
            "--ngpu", "0", "--resume", "true", "--max_epoch", str(max_epoch), "--output_dir", str(out), *data]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1")


def test_training_skips_a_nan_batch_and_saves_only_finite_weights(tmp_path):
    d = _data_dir(tmp_path, n=6, nan_utt=2)
    out = tmp_path / "exp"
    res = run(_train_cmd(tmp_path, d, out, max_epoch=1), capture_output=True, text=True, env=_env(),
              cwd=tmp_path, timeout=300)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    assert "non-finite training loss" in log and "optimizer step is skipped" in log
    state = torch.load(out / "1epoch.pth", map_location="cpu")
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    # Every train batch of 2 holds utt002 once per epoch: exactly 1 of 3 steps skipped.
    assert "nonfinite_step=0.333" in log


# The wav.scp entry of one training utterance, run as a pipe by ESPnet's kaldi_ark loader
# each time the utterance is read: once epoch 1 is checkpointed, and while the hold file
# exists, it says so and waits. The training is then certainly inside epoch 2 (after
# epoch 1's checkpoint, before epoch 2's end), whatever the machine's speed.
GATE = """\
if [ -e '{ckpt}' ] && [ -e '{hold}' ]; then
  : > '{reached}'
  while [ -e '{hold}' ]; do sleep 0.05; done
fi
exec cat '{wav}'
"""


def test_kill_minus_9_mid_epoch_then_rerun_resumes_from_the_last_checkpoint(tmp_path):
    d = _data_dir(tmp_path, n=24, subtype="FLOAT")
    out = tmp_path / "exp"
    hold, reached = tmp_path / "hold", tmp_path / "reached"
    gate = tmp_path / "gate.sh"
    gate.write_text(GATE.format(ckpt=out / "checkpoint.pth", hold=hold, reached=reached, wav=d / "wav" / "utt013.wav"))
    scp = (d / "wav.scp").read_text().splitlines()
    scp[13] = f"utt013 sh {gate} |"
    (d / "wav.scp").write_text("\n".join(scp) + "\n")
    cmd = _train_cmd(tmp_path, d, out, max_epoch=3, speech_type="kaldi_ark") + ["--keep_nbest_models", "3"]
    log_path = tmp_path / "first.log"
    hold.touch()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=tmp_path,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not reached.exists():
            assert proc.poll() is None, "training ended before epoch 2 reached the gate:\n" + log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "epoch 2 did not start within 300 s:\n" + log_path.read_text()[-3000:]
            time.sleep(0.1)
        assert (out / "1epoch.pth").exists() and not (out / "2epoch.pth").exists()
    finally:
        kill_group(proc)  # kill -9 of the training and its data-loading pipe
        proc.wait()
    hold.unlink()
    assert not (out / "2epoch.pth").exists()
    epoch1 = torch.load(out / "1epoch.pth", map_location="cpu")

    res = run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    assert "The training was resumed using" in log and "checkpoint.pth" in log
    assert "1epoch:train" not in log  # epoch 1 was not trained again
    assert (out / "3epoch.pth").exists()
    # The epoch-1 weights on disk are the ones the killed run saved.
    again = torch.load(out / "1epoch.pth", map_location="cpu")
    assert all(torch.equal(epoch1[k], again[k]) for k in epoch1)
    # The loss curve continues: epoch 1 from the killed run, epochs 2-3 from the rerun.
    first = _train_losses(log_path.read_text())
    rest = _train_losses(log)
    assert list(first) == [1] and list(rest) == [2, 3], (first, rest)
    assert rest[3] < first[1], (first, rest)


def _train_losses(log: str) -> dict:
    """{epoch: train loss} from ESPnet's 'Nepoch results: [train] ... loss=X' lines."""
    out = {}
    for line in log.splitlines():
        if "epoch results: [train]" in line:
            epoch = int(line.split("epoch results")[0].rsplit(" ", 1)[-1])
            out[epoch] = float(line.split(" loss=")[1].split(",")[0])
    return out
