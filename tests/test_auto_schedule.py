"""``scheduler_conf.max_steps: auto``: the tri-stage schedule sized to the corpus.

* the default recipe keeps its schedule: on the default corpus's training shape files
  (tests/data/default_corpus_shapes, stage 5 of ``./run.sh`` with conf/corpus.yaml, seed 1)
  ``auto`` gives 9 x 394 = 3,546 updates and the same warm-up / hold / decay as the
  number the presets used to hard-code;
* on a corpus of another size (a data dir the test writes) it gives the count of the
  iterator ESPnet builds for training, the trainer's length check stays silent, and
  the lr decays to its final value at the last update (a fixed 3,546 would have held
  the peak to the end);
* every preset with a fixed-length schedule uses ``auto``.
"""
import argparse
import gzip
import math
from pathlib import Path

import pytest
import torch
import yaml
from espnet2.schedulers.tristage_lr import TristageLR
from espnet2.tasks.abs_task import scheduler_classes
from espnet2.train.distributed_utils import DistributedOption

from espnet_plugins.tasks.asr import MoEASRTask
from espnet_plugins.train.auto_schedule import count_train_batches, resolve_auto_schedule
from espnet_plugins.train.trainer import MoETrainer, schedule_length_warning

from test_presets import BASE_PRESET, PRESETS, lists, parse  # noqa: F401  (fixture)

DEFAULT_SHAPES = Path(__file__).parent / "data" / "default_corpus_shapes"
FOLD = ["--fold_length", "80000", "--fold_length", "150"]  # as run.sh stage 6


def _shapes(tmp_path: Path) -> list:
    out = []
    for name in ("speech_shape", "text_shape"):
        (tmp_path / name).write_bytes(gzip.decompress((DEFAULT_SHAPES / f"{name}.gz").read_bytes()))
        out += ["--train_shape_file", str(tmp_path / name)]
    return out


def test_default_recipe_schedule_is_unchanged(lists, tmp_path):  # noqa: F811
    args = parse(BASE_PRESET, lists, *_shapes(tmp_path), *FOLD)
    assert args.scheduler == "tristagelr" and args.scheduler_conf["max_steps"] == "auto"
    assert count_train_batches(args) == 394
    assert resolve_auto_schedule(args) == 3546 and args.scheduler_conf["max_steps"] == 3546
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    auto = TristageLR(opt, **args.scheduler_conf)
    fixed_conf = dict(args.scheduler_conf, max_steps=3546)
    fixed = TristageLR(torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3), **fixed_conf)
    assert (auto.warmup_steps, auto.hold_steps, auto.decay_steps) == (252, 1520, 1774)
    assert (auto.warmup_steps, auto.hold_steps, auto.decay_steps) == (fixed.warmup_steps, fixed.hold_steps,
                                                                      fixed.decay_steps)


def _data_dir(d: Path, lengths: list) -> Path:
    """A training dir (wav.scp entries are never opened: only the batch count is used) + shape files."""
    d.mkdir()
    keys = [f"utt{i:05d}" for i in range(len(lengths))]
    (d / "wav.scp").write_text("".join(f"{k} /nonexistent/{k}.wav\n" for k in keys))
    (d / "text").write_text("".join(f"{k} {chr(0x905) * 5}\n" for k in keys), encoding="utf-8")
    (d / "utt2lang").write_text("".join(f"{k} hi\n" for k in keys))
    (d / "speech_shape").write_text("".join(f"{k} {n}\n" for k, n in zip(keys, lengths)))
    (d / "text_shape").write_text("".join(f"{k} {max(1, n // 1600)}\n" for k, n in zip(keys, lengths)))
    return d


def test_another_corpus_size_gets_a_schedule_that_decays(lists, tmp_path):  # noqa: F811
    # 700 utterances of 1-4 s: ~100 batches of 250k samples, 9 epochs: far from 3546
    g = torch.Generator().manual_seed(0)
    lengths = (16000 + torch.randint(0, 48000, (700,), generator=g)).tolist()
    d = _data_dir(tmp_path / "train", lengths)
    args = parse(BASE_PRESET, lists, "--train_shape_file", str(d / "speech_shape"), "--train_shape_file",
                 str(d / "text_shape"), "--train_data_path_and_name_and_type", f"{d}/wav.scp,speech,sound",
                 "--train_data_path_and_name_and_type", f"{d}/text,text,text",
                 "--train_data_path_and_name_and_type", f"{d}/utt2lang,lang,text", "--token_type", "char",
                 "--use_preprocessor", "true", "--cleaner", "none", "--g2p", "none", *FOLD)
    updates = resolve_auto_schedule(args)
    # the iterator ESPnet builds for training (SortaGrad wrapper included) has that many batches
    dist = DistributedOption()  # not distributed
    factory = MoEASRTask.build_iter_factory(args, dist, mode="train")
    batches = len(factory.build_iter(1))
    assert 50 < batches < 200 and updates == 9 * batches
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sch = scheduler_classes[args.scheduler](opt, **args.scheduler_conf)
    assert schedule_length_warning([sch], factory, MoETrainer.build_options(args)) is None
    for _ in range(updates - 1):
        opt.step()
        sch.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05e-3, rel=0.01)  # decayed to final_lr_scale at the end
    # the old fixed length would still hold the peak at the last update
    opt2 = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    old = TristageLR(opt2, **dict(args.scheduler_conf, max_steps=3546))
    for _ in range(updates - 1):
        opt2.step()
        old.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert schedule_length_warning([old], factory, MoETrainer.build_options(args)) is not None


def test_accum_grad_and_num_iters_per_epoch():
    args = argparse.Namespace(scheduler_conf={"max_steps": "auto", "warmup_ratio": 0.1}, max_epoch=3,
                              accum_grad=2, num_iters_per_epoch=101)
    assert resolve_auto_schedule(args) == 3 * 101 // 2 and args.scheduler_conf["max_steps"] == 151
    args = argparse.Namespace(scheduler_conf={"total_steps": "AUTO", "warmup_steps": 10}, max_epoch=2,
                              accum_grad=1, num_iters_per_epoch=None)
    assert resolve_auto_schedule(args, batches=40) == 80 and args.scheduler_conf["total_steps"] == 80
    assert resolve_auto_schedule(argparse.Namespace(scheduler_conf={"warmup_steps": 10})) is None
    off = argparse.Namespace(scheduler=None, scheduler_conf={"max_steps": "auto"})  # a merged config, no scheduler
    assert resolve_auto_schedule(off) is None and off.scheduler_conf["max_steps"] == "auto"
    args = argparse.Namespace(scheduler_conf={"max_steps": "auto"}, max_epoch=2, accum_grad=1,
                              num_iters_per_epoch=None, iterator_type="chunk", multiple_iterator=False)
    with pytest.raises(ValueError, match="auto needs iterator_type: sequence"):
        resolve_auto_schedule(args)


def test_every_fixed_length_preset_uses_auto():
    fixed = []
    for p in PRESETS:
        conf = yaml.safe_load(p.read_text(encoding="utf-8"))
        sc = conf.get("scheduler_conf") or {}
        for key in ("max_steps", "total_steps"):
            if key in sc:
                fixed.append((p.name, sc[key]))
    assert len(fixed) >= 12 and all(v == "auto" for _, v in fixed), [f for f in fixed if f[1] != "auto"]
    assert math.isclose(252 / 3546, 0.0711, abs_tol=1e-4)  # the comment's numbers


def test_training_resolves_auto_and_records_the_number(lists, tmp_path):  # noqa: F811
    """A real (tiny) ESPnet training with the default preset: config.yaml records the resolved
    max_steps and the trainer's schedule-length check stays silent."""
    import subprocess
    import sys

    import numpy as np
    import soundfile as sf

    tokens, langs = lists
    d = tmp_path / "train"
    d.mkdir()
    keys = [f"utt{i:02d}" for i in range(12)]
    for i, k in enumerate(keys):
        sf.write(d / f"{k}.wav", 0.1 * np.sin(np.arange(16000) * (0.05 + 0.01 * i)), 16000, subtype="PCM_16")
    (d / "wav.scp").write_text("".join(f"{k} {d / k}.wav\n" for k in keys))
    (d / "text").write_text("".join(f"{k} {chr(0x905 + i % 5) * 3}\n" for i, k in enumerate(keys)), encoding="utf-8")
    (d / "utt2lang").write_text("".join(f"{k} hi\n" for k in keys))
    (d / "speech_shape").write_text("".join(f"{k} 16000\n" for k in keys))
    (d / "text_shape").write_text("".join(f"{k} 3\n" for k in keys))
    out = tmp_path / "exp"
    data = []
    for mode in ("train", "valid"):
        data += [f"--{mode}_data_path_and_name_and_type", f"{d}/wav.scp,speech,sound",
                 f"--{mode}_data_path_and_name_and_type", f"{d}/text,text,text",
                 f"--{mode}_data_path_and_name_and_type", f"{d}/utt2lang,lang,text",
                 f"--{mode}_shape_file", str(d / "speech_shape"), f"--{mode}_shape_file", str(d / "text_shape")]
    cmd = [sys.executable, "-m", "espnet_plugins.bin.asr_train", "--config", str(BASE_PRESET), "--token_list",
           str(tokens), "--lang_list", str(langs), "--token_type", "char", "--use_preprocessor", "true",
           "--cleaner", "none", "--g2p", "none", "--non_linguistic_symbols", "none", "--normalize", "none",
           "--frontend_conf", "fs=16k", "--batch_bins", "100000", "--max_epoch", "2", "--num_workers", "0",
           "--ngpu", "0", "--output_dir", str(out), "--specaug_start_iter", "0", "--keep_nbest_models", "1",
           *data]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**__import__("os").environ,
                                                                                 "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    conf = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    # 12 utterances of 16000 samples + text in batches of 100000 bins: 2 batches an epoch, 2 epochs
    assert conf["scheduler_conf"]["max_steps"] == 4, conf["scheduler_conf"]
    assert (out / "2epoch.pth").exists() and (out / "checkpoint.pth").exists()
    # the trainer's check (a WARNING: printed even where INFO logging is off) stays silent
    assert "lr schedule length mismatch" not in res.stderr + res.stdout
    # resolving `auto` before ESPnet configures logging must not silence its INFO log
    # (a root logging.info() there installed a WARNING-level handler: no epoch lines)
    assert "1epoch results:" in res.stderr and "auto -> 4 updates" not in res.stdout, res.stderr[-2000:]
