#!/usr/bin/env python3
"""Fresh language-router variants trained on a checkpoint's frozen shared-block output.

Issue 35 probe (docs/router_diagnosis.md): ``local/probe_router.py``'s recipe (160
training / 80 dev utterances, Adam lr 2e-3, batches of 8, seed 0) for router variants:
``linear``, ``tdnn`` (the presets' 512-channel TDNN), ``tdnn_nodrop``, ``tdnn_noln``
(no per-layer LayerNorm), ``tdnn_bypass`` (TDNN + linear skip), ``tdnn_lr1e-3``.
Features are cached in /tmp/rd. Run from the recipe dir:

    local/router_variants.py exp/asr_conv_rprobe_base_s1 1epoch.pth linear,tdnn,tdnn_noln 300
"""
import sys
from pathlib import Path

import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
import espnet_plugins  # noqa
from probe_router import load, features, train, dev_lid
from espnet_plugins.asr.moe.language_router import LanguageRouter
torch.set_num_threads(1)
exp, ck, variants = Path(sys.argv[1]), sys.argv[2], sys.argv[3].split(",")
steps = int(sys.argv[4]) if len(sys.argv) > 4 else 300
Path("/tmp/rd").mkdir(exist_ok=True)
cache = Path(f"/tmp/rd/feats_{exp.name}_{ck}.pt")
if cache.exists():
    tr, dev, langs = torch.load(cache)
else:
    model, langs = load(exp, ck)
    tr = features(model, langs, Path("dump/raw"), "train", 160)
    dev = features(model, langs, Path("dump/raw"), "dev", 80)
    torch.save((tr, dev, langs), cache)
size = tr[0][0].shape[-1]

class Bypass(torch.nn.Module):
    def __init__(self, tdnn, linear):
        super().__init__(); self.tdnn, self.linear = tdnn, linear
    def forward(self, x, valid):
        return self.tdnn(x, valid) + self.linear(x, valid)

def build(v):
    torch.manual_seed(0)
    if v == "linear": return LanguageRouter(size, len(langs), "linear")
    if v == "tdnn": return LanguageRouter(size, len(langs), "tdnn", 512)
    if v == "tdnn_nodrop": return LanguageRouter(size, len(langs), "tdnn", 512, dropout_rate=0.0)
    if v == "tdnn_bypass":
        t = LanguageRouter(size, len(langs), "tdnn", 512); torch.manual_seed(1)
        return Bypass(t, LanguageRouter(size, len(langs), "linear"))
    if v == "tdnn_lr1e-3": return LanguageRouter(size, len(langs), "tdnn", 512)
    if v == "tdnn_bn": return LanguageRouter(size, len(langs), "tdnn", 512, conv_norm="batch_norm")
    if v in ("tdnn_none", "tdnn_noln"):  # tdnn_noln: finding 6's name for it
        return LanguageRouter(size, len(langs), "tdnn", 512, conv_norm="none")
    if v == "tdnn_drop05": return LanguageRouter(size, len(langs), "tdnn", 512, dropout_rate=0.5, conv_norm="none")
    if v == "tdnn_small": return LanguageRouter(size, len(langs), "tdnn", 64, conv_norm="none")
    if v == "tdnn_k1": return LanguageRouter(size, len(langs), "tdnn", 512, kernel_sizes=(1, 1, 1), dilations=(1, 1, 1), conv_norm="none")
    if v == "own":  # the checkpoint's own router, trained on
        m, _ = load(exp, ck); return m.encoder.router
    raise SystemExit(v)
for v in variants:
    r = build(v)
    if steps == 0 or v == "own":
        print(f"{v}: before training: train utterance LID {dev_lid(r, tr):.3f}, dev {dev_lid(r, dev):.3f}", flush=True)
    lr = 1e-3 if v == "tdnn_lr1e-3" else 2e-3
    opt = torch.optim.Adam(r.parameters(), lr=lr)
    loss = train(r, opt, tr, steps, len(langs))
    print(f"{v}: {steps} steps, final train loss {loss:.3f}, train utterance LID {dev_lid(r, tr):.3f}, "
          f"dev utterance LID {dev_lid(r, dev):.3f}", flush=True)
