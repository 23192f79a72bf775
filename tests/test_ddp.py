"""Multi-process (DDP) training on the CPU through ESPnet's own trainer: two processes,
gloo backend, ``--unused_parameters false``.

ESPnet's launcher (``--multiprocessing_distributed true``) spawns one process per GPU
and needs ``--ngpu > 1``; on the CPU its other path does the same job: an external
launcher (here ``torchrun``, as ``espnet2.bin.launch`` / ``srun`` on a cluster) sets
``RANK`` / ``WORLD_SIZE`` / ``MASTER_*`` and ``--multiprocessing_distributed false``
makes ``DistributedOption`` join them; the trainer then wraps the model in
``DistributedDataParallel`` and shards every mini-batch over the ranks.

Top-1 MoE under DDP is the classic failure: an expert that gets no token in a step has
no gradient, DDP (``find_unused_parameters=False``) waits for it and the next step
fails. Our experts are stacked ``[E, in, out]`` parameters whose grouped matmul writes
zeros into the gradient of every expert without tokens, so each expert weight always
joins the reduction. The tests train a BLR-MoE model whose routing the test forces (one
utterance per rank; step s sends every frame of rank r to expert (s + r) % 4: each step,
3 of 4 experts get no token on each rank and the expert used on one rank is empty on the
other) and the SMEAR + BLR-MoE mini preset (its own frame routing, with ``--use_amp``:
bf16 on the CPU), record the per-expert token counts of every training forward on each
rank, and check that the ranks end with identical parameters and that ``--resume``
continues a distributed training. Launch: ``torchrun --standalone --nproc_per_node 2``
(docs/scale_out.md).
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml

from _helpers import run

ROOT = Path(__file__).resolve().parents[1]
LANGS = ["hi", "mr", "ta", "te"]
N_UTT = 20  # global batch 2 = 1 utterance per rank: 10 steps per epoch
N_VALID = 4

# Runs inside every torchrun worker: records each training forward's per-expert rows
# (DispatchPlan.sizes) and, when training ends, the rank's parameters.
DRIVER = '''
import json, os, sys
import torch
from espnet_plugins.asr.moe import dispatch
from espnet_plugins.train.trainer import MoETrainer

import threading, time

probe, rank = os.environ["DDP_PROBE_DIR"], int(os.environ["RANK"])
parent = os.getppid()


def orphan_watch():  # torchrun starts workers in their own sessions: die with it
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


threading.Thread(target=orphan_watch, daemon=True).start()
plans = open(os.path.join(probe, f"plans.rank{rank}.jsonl"), "a")
init = dispatch.DispatchPlan.__init__

def recording_init(self, *args, **kwargs):
    init(self, *args, **kwargs)
    if torch.is_grad_enabled():  # training forward (validation runs under no_grad)
        amp = torch.is_autocast_enabled("cpu")
        plans.write(json.dumps({"sizes": self.sizes, "amp": amp}) + "\\n"); plans.flush()

dispatch.DispatchPlan.__init__ = recording_init

if os.environ.get("DDP_FORCE_ROUTING"):
    # Every frame of training step s goes to expert (s + rank) % E: each expert with
    # tokens on one rank has none on the other (validation keeps the router's choice).
    from espnet_plugins.asr.moe.language_router import LanguageRouter
    select, step = LanguageRouter.select_experts, [0]

    def forced(self, logits, valid):
        index = select(self, logits, valid)
        if not torch.is_grad_enabled():
            return index
        step[0] += 1
        return torch.full_like(index, (step[0] + rank) % logits.size(-1))

    LanguageRouter.select_experts = forced
run = MoETrainer.run.__func__

def saving_run(cls, *args, **kwargs):
    run(cls, *args, **kwargs)
    model = kwargs.get("model", args[0] if args else None)
    torch.save({n: p.detach().clone() for n, p in model.named_parameters()},
               os.path.join(probe, f"params.rank{rank}.pth"))

MoETrainer.run = classmethod(saving_run)
from espnet_plugins.bin.asr_train import main
main()
'''


def _data(root: Path) -> Path:
    """N_UTT utterances of 0.5 s (tone + noise), 4 languages, 2-character transcripts."""
    d = root / "data"
    (d / "wav").mkdir(parents=True)
    rng = np.random.default_rng(0)
    wav, text, lang, shape = [], [], [], []
    for i in range(N_UTT):
        utt = f"utt{i:03d}"
        t = np.arange(8000) / 16000
        x = 0.3 * np.sin(2 * np.pi * (150 + 35 * i) * t) + 0.05 * rng.standard_normal(8000)
        sf.write(d / "wav" / f"{utt}.wav", x, 16000, subtype="PCM_16")
        wav.append(f"{utt} {d / 'wav' / utt}.wav")
        text.append(f"{utt} {'ab'[i % 2]}{'ba'[i % 3 % 2]}")
        lang.append(f"{utt} {LANGS[i % 4]}")
        shape.append(f"{utt} 8000")
    for name, lines in (("wav.scp", wav), ("text", text), ("utt2lang", lang), ("shape", shape)):
        (d / name).write_text("\n".join(lines) + "\n")
        (root / "valid").mkdir(exist_ok=True)
        (root / "valid" / name).write_text("\n".join(lines[:N_VALID]) + "\n")
    (root / "tokens.txt").write_text("\n".join(["<blank>", "<unk>", "a", "b", "<sos/eos>"]) + "\n")
    (root / "lang_list").write_text("\n".join(LANGS) + "\n")
    (root / "driver.py").write_text(DRIVER)
    return d


def _config(root: Path, name: str, **encoder_conf) -> Path:
    """The SMEAR + BLR-MoE mini preset for DDP: no global MVN stats, global batch 2,
    no TensorBoard; ``drop_preencoder`` leaves BLR-MoE alone."""
    conf = yaml.safe_load((ROOT / "conf" / "train_mini_smear_blr_moe.yaml").read_text())
    if encoder_conf.pop("drop_preencoder", False):
        conf.pop("preencoder"), conf.pop("preencoder_conf")
    conf["encoder_conf"].update(encoder_conf)
    conf.update(normalize="utterance_mvn", batch_type="folded", batch_size=2, fold_length=[16000],
                use_tensorboard=False, log_interval=1, seed=7, unused_parameters=False,
                token_type="char", cleaner=None, g2p=None)
    conf.pop("normalize_conf", None)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


def _torchrun(root: Path, config: Path, out: Path, max_epoch: int, probe: Path, force_routing: bool = False,
              *extra: str):
    data = []
    for split, d in (("train", root / "data"), ("valid", root / "valid")):
        data += [f"--{split}_data_path_and_name_and_type", f"{d}/wav.scp,speech,sound",
                 f"--{split}_data_path_and_name_and_type", f"{d}/text,text,text",
                 f"--{split}_data_path_and_name_and_type", f"{d}/utt2lang,lang,text",
                 f"--{split}_shape_file", f"{d}/shape"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(root / "driver.py"),
           "--config", str(config), "--token_list", str(root / "tokens.txt"),
           "--lang_list", str(root / "lang_list"), "--frontend_conf", "fs=16k",
           "--ngpu", "0", "--multiprocessing_distributed", "false", "--dist_backend", "gloo",
           "--resume", "true", "--max_epoch", str(max_epoch), "--output_dir", str(out), *data, *extra]
    probe.mkdir(parents=True, exist_ok=True)
    env = {"OMP_NUM_THREADS": "1", "DDP_PROBE_DIR": str(probe), "PATH": "/usr/bin:/bin",
           "HOME": str(root), "PYTHONPATH": str(ROOT),
           "DDP_FORCE_ROUTING": "1" if force_routing else "",
           "GLOO_SOCKET_IFNAME": "lo"}  # gloo over loopback, whatever the host's interfaces
    res = run(cmd, capture_output=True, text=True, env=env, cwd=root, timeout=600)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-5000:]
    return log


def _plans(probe: Path, rank: int, amp: bool = False):
    """Per-expert rows of each training forward of ``rank``; all ran with bf16 CPU
    autocast on iff ``amp``."""
    lines = [json.loads(x) for x in (probe / f"plans.rank{rank}.jsonl").read_text().splitlines()]
    assert all(x["amp"] == amp for x in lines)
    return [x["sizes"] for x in lines]


def _assert_equal_across_ranks(probe: Path, init_params=None):
    p0 = torch.load(probe / "params.rank0.pth")
    p1 = torch.load(probe / "params.rank1.pth")
    assert list(p0) == list(p1)
    differ = [n for n in p0 if not torch.equal(p0[n], p1[n])]
    assert not differ, f"parameters differ across ranks: {differ[:5]}"
    return p0


def test_blr_moe_ddp_with_empty_experts_keeps_ranks_equal(tmp_path):
    _data(tmp_path)
    config = _config(tmp_path, "blr", drop_preencoder=True)
    probe = tmp_path / "probe"
    _torchrun(tmp_path, config, tmp_path / "exp", max_epoch=2, probe=probe, force_routing=True)
    assert "distributed: true" in (tmp_path / "exp" / "config.yaml").read_text()
    plans = [_plans(probe, r) for r in (0, 1)]
    # 2 epochs x 10 steps, one plan (shared by the MoE blocks) per training forward.
    assert len(plans[0]) == len(plans[1]) == 20
    # Every step: 3 of 4 experts without a token on each rank, and the expert that
    # has tokens on one rank has none on the other.
    for a, b in zip(*plans):
        assert sorted(a)[:3] == sorted(b)[:3] == [0, 0, 0], (a, b)
        assert a.index(max(a)) != b.index(max(b)), (a, b)
    params = _assert_equal_across_ranks(probe)
    weight = params["encoder.encoders.1.feed_forward.w_1.weight"]
    assert torch.isfinite(weight).all()


def test_smear_blr_moe_ddp_bf16_resume(tmp_path):
    """Also ESPnet's --use_amp on the CPU: MoETrainer runs the forwards under bf16
    autocast (ESPnet's own autocast is CUDA-only); the weights stay fp32."""
    _data(tmp_path)
    config = _config(tmp_path, "smear")
    out = tmp_path / "exp"
    probe1, probe2 = tmp_path / "probe1", tmp_path / "probe2"
    _torchrun(tmp_path, config, out, 1, probe1, False, "--use_amp", "true")
    first = _assert_equal_across_ranks(probe1)
    assert (out / "checkpoint.pth").exists() and (out / "1epoch.pth").exists()
    log = _torchrun(tmp_path, config, out, 2, probe2, False, "--use_amp", "true")
    assert "The training was resumed using" in log
    assert "1epoch:train" not in log  # epoch 1 is not trained again
    assert (out / "2epoch.pth").exists()
    plans = [_plans(probe1, r, amp=True) + _plans(probe2, r, amp=True) for r in (0, 1)]
    assert len(plans[0]) == len(plans[1]) == 20  # 20 steps over the two runs
    # Frame routing of the mini preset: some step had an expert without tokens.
    assert any(0 in sizes for r in plans for sizes in r)
    last = _assert_equal_across_ranks(probe2)
    # Training went on from the checkpoint: SMEAR experts and the router changed.
    for name in ("preencoder.experts.w1", "encoder.router.output.weight"):
        if name in first:
            assert not torch.equal(first[name], last[name]), name
    # rank 0's saved epoch-2 model is what both ranks hold, in fp32 (master weights)
    saved = torch.load(out / "2epoch.pth")
    assert all(torch.equal(saved[n], last[n]) for n in last)
    assert all(v.dtype == torch.float32 for v in last.values())
    assert all(torch.isfinite(v).all() for v in last.values())
