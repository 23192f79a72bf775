#!/usr/bin/env python3
"""Can a fresh language router learn LID from a trained model's shared-block output?

Diagnostic for BLR-MoE / LR-MoE routers that stay at chance: encodes ``--n_train``
training and ``--n_dev`` dev utterances with ``--exp``'s checkpoint, keeps the output of
the last shared block (what the encoder's router reads), then trains a fresh linear and a
fresh TDNN :class:`LanguageRouter` on it (frame cross-entropy, Adam, random batches of 8
utterances, ``--steps`` steps, seed 0) and prints each one's final training loss and
utterance-level LID accuracy on dev (arg-max of the mean frame log-probability). The
row ``model's router`` trains a copy of the checkpoint's own router the same way (its
trained weights, a fresh Adam): if it learns as fast as the fresh ones, a router stuck
at chance in the model is not broken itself (no dead units), its training was.

    local/probe_router.py --exp exp/asr_blr_moe_warmup --checkpoint 2epoch.pth

Run from the recipe dir (paths in config.yaml are relative to it). Needs an ``encoder:
blr_moe`` model. One thread; ~2 min on a CPU.
"""
import argparse
import copy
import random
from pathlib import Path

import soundfile as sf
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", required=True, type=Path)
    p.add_argument("--checkpoint", default="valid.loss.ave.pth")
    p.add_argument("--data_root", default=Path("dump/raw"), type=Path)
    p.add_argument("--n_train", type=int, default=160)
    p.add_argument("--n_dev", type=int, default=80)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--channels", type=int, default=128)
    a = p.parse_args()

    import espnet_plugins  # noqa: F401
    from espnet_plugins.asr.moe.language_router import LanguageRouter
    from espnet_plugins.tasks.asr import MoEASRTask

    torch.set_num_threads(1)
    model, args = MoEASRTask.build_model_from_file(a.exp / "config.yaml", a.exp / a.checkpoint, "cpu")
    model.eval()
    langs = list(args.lang_list)
    enc = model.encoder
    captured = {}
    enc.encoders[enc.num_shared_blocks - 1].register_forward_hook(lambda m, i, o: captured.update(x=o))

    def features(split: str, n: int):
        u2l = dict(line.split(maxsplit=1) for line in open(a.data_root / split / "utt2lang"))
        wav = [line.split(maxsplit=1) for line in open(a.data_root / split / "wav.scp")]
        random.Random(0).shuffle(wav)
        out = []
        for utt, path in wav[:n]:
            x = torch.tensor(sf.read(path.strip(), dtype="float32")[0])[None]
            with torch.no_grad():
                model.encode(x, torch.tensor([x.shape[1]]))
            model.pop_aux()
            out.append((captured["x"][0], langs.index(u2l[utt].split()[0])))
        return out

    train, dev = features("train", a.n_train), features("dev", a.n_dev)
    size = train[0][0].shape[-1]
    candidates = {"linear": None, "tdnn": None, "model's router": copy.deepcopy(enc.router)}
    for kind, router in candidates.items():
        torch.manual_seed(0)
        if router is None:
            router = LanguageRouter(size, len(langs), kind, a.channels)
        router.train()
        opt = torch.optim.Adam(router.parameters(), lr=2e-3)
        for step in range(a.steps):
            batch = random.Random(step).sample(train, 8)
            x = torch.nn.utils.rnn.pad_sequence([f for f, _ in batch], batch_first=True)
            lengths = torch.tensor([len(f) for f, _ in batch])
            valid = torch.arange(x.size(1))[None] < lengths[:, None]
            target = torch.tensor([lang for _, lang in batch])[:, None].expand_as(valid)
            logits = router(x, valid)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(langs)), target.reshape(-1),
                                                     reduction="none")
            loss = (loss * valid.reshape(-1)).sum() / valid.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        router.eval()
        with torch.no_grad():
            correct = sum(int(router(f[None], torch.ones(1, len(f), dtype=torch.bool))[0].log_softmax(-1)
                              .mean(0).argmax() == lang) for f, lang in dev)
        print(f"{kind}: final train loss {loss.item():.3f}, dev utterance LID {correct / len(dev):.3f}")


if __name__ == "__main__":
    main()
