#!/usr/bin/env python3
"""Can a language router learn LID from a trained model's shared-block output?

Diagnostic for BLR-MoE / LR-MoE routers that stay at chance: encodes ``--n_train``
training and ``--n_dev`` dev utterances with ``--exp``'s checkpoint, keeps the output of
the last shared block (what the encoder's router reads), then trains a fresh linear and a
fresh TDNN :class:`LanguageRouter` on it (frame cross-entropy, Adam lr 2e-3, random
batches of 8 utterances, ``--steps`` steps, seed 0) and prints each one's final training
loss and utterance-level LID accuracy on dev (arg-max of the mean frame log-probability).
The row ``model's router`` trains a copy of the checkpoint's own router the same way (its
trained weights, a fresh Adam): if it learns as fast as the fresh ones, a router stuck
at chance in the model is not broken itself (no dead units), its training was.

    local/probe_router.py --exp exp/asr_blr_moe_warmup --checkpoint 6epoch.pth

Replay mode (``--plateau_exp``): does training on plateau features trap a router? A
fresh TDNN router first trains ``--plateau_steps`` steps on the features of a model
still on its CTC plateau (``--plateau_exp`` / ``--plateau_checkpoint``), then
``--steps`` more steps with the SAME Adam on ``--exp``'s features; compared with a fresh
router trained ``--steps`` steps on ``--exp``'s features. ``--grad_scale`` multiplies the
router's gradients before each step, as the global gradient clipping of a joint training
does (ESPnet's grad_clip 5 at a total gradient norm of ~130: 0.04); Adam lr 1e-3, weight
decay 1e-6, as in the BLR preset.

    local/probe_router.py --exp exp/asr_blr_moe --checkpoint 6epoch.pth \\
        --plateau_exp exp/asr_blr_moe_attn_v --plateau_checkpoint 2epoch.pth

Run from the recipe dir (paths in config.yaml are relative to it). Needs ``encoder:
blr_moe`` models. One thread; ~2-4 min on a CPU.
"""
import argparse
import copy
import random
from pathlib import Path

import soundfile as sf
import torch


def load(exp: Path, checkpoint: str):
    from espnet_plugins.tasks.asr import MoEASRTask

    model, args = MoEASRTask.build_model_from_file(exp / "config.yaml", exp / checkpoint, "cpu")
    return model.eval(), list(args.lang_list)


def features(model, langs, data_root: Path, split: str, n: int):
    """[(last shared block output [T, D], language index)] of n shuffled utterances."""
    enc = model.encoder
    captured = {}
    hook = enc.encoders[enc.num_shared_blocks - 1].register_forward_hook(lambda m, i, o: captured.update(x=o))
    u2l = dict(line.split(maxsplit=1) for line in open(data_root / split / "utt2lang"))
    wav = [line.split(maxsplit=1) for line in open(data_root / split / "wav.scp")]
    random.Random(0).shuffle(wav)
    out = []
    for utt, path in wav[:n]:
        x = torch.tensor(sf.read(path.strip(), dtype="float32")[0])[None]
        with torch.no_grad():
            model.encode(x, torch.tensor([x.shape[1]]))
        out.append((captured["x"][0], langs.index(u2l[utt].split()[0])))
    hook.remove()
    return out


def train(router, opt, data, steps: int, num_langs: int, seed0: int = 0, grad_scale: float = 1.0) -> float:
    """``steps`` Adam steps of frame cross-entropy on random batches of 8; last loss."""
    router.train()
    for step in range(steps):
        batch = random.Random(seed0 + step).sample(data, 8)
        x = torch.nn.utils.rnn.pad_sequence([f for f, _ in batch], batch_first=True)
        lengths = torch.tensor([len(f) for f, _ in batch])
        valid = torch.arange(x.size(1))[None] < lengths[:, None]
        target = torch.tensor([lang for _, lang in batch])[:, None].expand_as(valid)
        logits = router(x, valid)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, num_langs), target.reshape(-1),
                                                 reduction="none")
        loss = (loss * valid.reshape(-1)).sum() / valid.sum()
        opt.zero_grad()
        loss.backward()
        if grad_scale != 1.0:
            for p in router.parameters():
                p.grad.mul_(grad_scale)
        opt.step()
    return loss.item()


def dev_lid(router, dev) -> float:
    router.eval()
    with torch.no_grad():
        correct = sum(int(router(f[None], torch.ones(1, len(f), dtype=torch.bool))[0].log_softmax(-1)
                          .mean(0).argmax() == lang) for f, lang in dev)
    return correct / len(dev)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", required=True, type=Path)
    p.add_argument("--checkpoint", default="valid.loss.ave.pth")
    p.add_argument("--data_root", default=Path("dump/raw"), type=Path)
    p.add_argument("--n_train", type=int, default=160)
    p.add_argument("--n_dev", type=int, default=80)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--channels", type=int, default=128)
    p.add_argument("--plateau_exp", type=Path, help="replay mode: a model still on its CTC plateau")
    p.add_argument("--plateau_checkpoint", default="1epoch.pth")
    p.add_argument("--plateau_steps", type=int, default=800)
    p.add_argument("--grad_scale", type=float, default=0.04)
    a = p.parse_args()

    import espnet_plugins  # noqa: F401
    from espnet_plugins.asr.moe.language_router import LanguageRouter

    torch.set_num_threads(1)
    model, langs = load(a.exp, a.checkpoint)
    n_train = max(a.n_train, 200) if a.plateau_exp else a.n_train
    train_set = features(model, langs, a.data_root, "train", n_train)
    dev = features(model, langs, a.data_root, "dev", a.n_dev)
    size = train_set[0][0].shape[-1]

    def fresh(kind: str):
        torch.manual_seed(0)
        return LanguageRouter(size, len(langs), kind, a.channels)

    if a.plateau_exp:
        plateau_model, plateau_langs = load(a.plateau_exp, a.plateau_checkpoint)
        if plateau_langs != langs:
            raise SystemExit(f"--plateau_exp has languages {plateau_langs}, --exp {langs}: they must match")
        plateau = features(plateau_model, langs, a.data_root, "train", n_train)
        router = fresh("tdnn")
        opt = torch.optim.Adam(router.parameters(), lr=1e-3, weight_decay=1e-6)
        loss = train(router, opt, plateau, a.plateau_steps, len(langs), grad_scale=a.grad_scale)
        print(f"plateau phase ({a.plateau_steps} steps): final train loss {loss:.3f}, "
              f"dev LID on --exp features {dev_lid(router, dev):.3f}")
        loss = train(router, opt, train_set, a.steps, len(langs), seed0=1000, grad_scale=a.grad_scale)
        print(f"then {a.steps} steps on --exp features, same Adam: final train loss {loss:.3f}, "
              f"dev LID {dev_lid(router, dev):.3f}")
        router = fresh("tdnn")
        opt = torch.optim.Adam(router.parameters(), lr=1e-3, weight_decay=1e-6)
        loss = train(router, opt, train_set, a.steps, len(langs), seed0=1000, grad_scale=a.grad_scale)
        print(f"fresh router, {a.steps} steps on --exp features: final train loss {loss:.3f}, "
              f"dev LID {dev_lid(router, dev):.3f}")
        return

    candidates = {"linear": None, "tdnn": None, "model's router": copy.deepcopy(model.encoder.router)}
    for kind, router in candidates.items():
        router = router if router is not None else fresh(kind)
        opt = torch.optim.Adam(router.parameters(), lr=2e-3)
        loss = train(router, opt, train_set, a.steps, len(langs))
        print(f"{kind}: final train loss {loss:.3f}, dev utterance LID {dev_lid(router, dev):.3f}")


if __name__ == "__main__":
    main()
