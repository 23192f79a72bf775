#!/usr/bin/env python3
"""Language-router diagnostics of a trained BLR-MoE / LR-MoE checkpoint.

For each ``--checkpoint`` of ``--exp`` prints (and writes as JSON with ``--out``):

* dev LID per language: the confusion of the utterance-level decision (majority of
  the frame arg-maxes, as the training log's ``lid_acc``), so a Hindi/Marathi merge
  shows as one column taking both rows;
* the router's logits: frame standard deviation of the logits, the mean |hi - mr|
  logit margin on hi and mr utterances, the LID cross-entropy on dev;
* gradient norms on ``--n_batches`` training batches (2 utterances per language each,
  eval mode so dropout does not add noise): the CTC loss's (everything but the LID
  term) and the weighted LID loss's (``lid_weight`` x LID) gradients on the router,
  the shared blocks (input layer + blocks before the router) and the MoE blocks, and
  at the router's input (the last shared block's output): their norms and cosine;
* with ``checkpoint.pth`` (ESPnet's resume file, which holds the optimizer state) the
  mean Adam step size ``|m| / (sqrt(v) + eps)`` of each part (the lr multiplies it).

    local/router_diagnostics.py --exp exp/asr_conv_acc_blr_moe_s1 \\
        --checkpoint 1epoch.pth --checkpoint 2epoch.pth --out exp/diag.json

Run from the recipe dir, one thread; ~1 min per checkpoint on a CPU.
"""
import argparse
import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def read_map(path: Path) -> dict:
    return dict(line.rstrip("\n").split(maxsplit=1) for line in open(path, encoding="utf-8") if line.strip())


def load(exp: Path, checkpoint: str):
    from espnet_plugins.tasks.asr import MoEASRTask

    config = exp / "config.yaml"
    ckpt = exp / checkpoint
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    model_state = state["model"] if "model" in state and "optimizers" in state else state
    model, args = MoEASRTask.build_model_from_file(config, None, "cpu")
    model.load_state_dict(model_state)
    preprocess = MoEASRTask.build_preprocess_fn(args, train=False)
    return model.eval(), args, preprocess, state if "optimizers" in state else None


def batch(items, preprocess):
    """Padded ESPnet batch from [(utt, wav path, text, lang)]."""
    data = [preprocess(u, {"speech": sf.read(w, dtype="float32")[0], "text": t, "lang": l}) for u, w, t, l in items]
    speech = [torch.tensor(d["speech"]) for d in data]
    text = [torch.tensor(d["text"]) for d in data]
    lang = [torch.tensor(d["lang"]) for d in data]
    pad = torch.nn.utils.rnn.pad_sequence
    return dict(
        speech=pad(speech, batch_first=True), speech_lengths=torch.tensor([len(s) for s in speech]),
        text=pad(text, batch_first=True, padding_value=-1), text_lengths=torch.tensor([len(t) for t in text]),
        lang=pad(lang, batch_first=True, padding_value=-1), lang_lengths=torch.tensor([len(x) for x in lang]),
    )


def utterances(root: Path, split: str):
    wav, text, u2l = read_map(root / split / "wav.scp"), read_map(root / split / "text"), read_map(root / split / "utt2lang")
    return [(u, wav[u], text[u], u2l[u].split()[0]) for u in sorted(wav)]


def parts(model):
    enc = model.encoder
    router = {id(p) for p in enc.router.parameters()}
    shared = {id(p) for p in enc.embed.parameters()} | {id(p) for b in enc.encoders[: enc.num_shared_blocks] for p in b.parameters()}
    moe = {id(p) for b in enc.encoders[enc.num_shared_blocks:] for p in b.parameters()}
    return {"router": router, "shared blocks": shared, "moe blocks": moe}


def grad_norms(model, groups):
    out = {}
    for name, ids in groups.items():
        sq = sum(float(p.grad.pow(2).sum()) for p in model.parameters() if id(p) in ids and p.grad is not None)
        out[name] = sq ** 0.5
    return out


def gradient_study(model, train_utts, preprocess, langs, n_batches, seed=0):
    enc = model.encoder
    groups = parts(model)
    captured = {}

    def keep(module, inputs, output):
        output.retain_grad()
        captured["x"] = output

    hook = enc.encoders[enc.num_shared_blocks - 1].register_forward_hook(keep)
    by_lang = defaultdict(list)
    for item in train_utts:
        by_lang[item[3]].append(item)
    rng = random.Random(seed)
    lid_weight = model.lid_weight
    rows = []
    for _ in range(n_batches):
        items = [it for lang in langs for it in rng.sample(by_lang[lang], 2)]
        b = batch(items, preprocess)
        result = {}
        for term in ("ctc", "lid"):
            model.zero_grad(set_to_none=True)
            if term == "ctc":
                model.lid_weight = 0.0
                loss = model(**b)[0]
            else:
                aux = model.encode_with_aux(b["speech"], b["speech_lengths"])[2]
                loss = lid_weight * model.lid_loss_and_acc(aux, b["lang"], b["lang_lengths"])[0]
            model.lid_weight = lid_weight
            loss.backward()
            g = grad_norms(model, groups)
            g["router input"] = float(captured["x"].grad.norm())
            result[term] = g
            result[term + "_x_grad"] = captured["x"].grad.detach().clone()
        a, c = result.pop("ctc_x_grad").flatten(), result.pop("lid_x_grad").flatten()
        result["cosine at router input"] = float(torch.nn.functional.cosine_similarity(a, c, dim=0))
        rows.append(result)
    hook.remove()
    model.zero_grad(set_to_none=True)
    mean = {}
    for term in ("ctc", "lid"):
        mean[term] = {k: float(np.mean([r[term][k] for r in rows])) for k in rows[0][term]}
    mean["cosine at router input"] = float(np.mean([r["cosine at router input"] for r in rows]))
    return mean


@torch.no_grad()
def dev_study(model, dev_utts, preprocess, langs):
    confusion = {l: defaultdict(int) for l in langs}
    stds, margins, ces = [], defaultdict(list), []
    i_hi, i_mr = (langs.index("hi"), langs.index("mr")) if {"hi", "mr"} <= set(langs) else (None, None)
    for item in dev_utts:
        b = batch([item], preprocess)
        logits = model.encode_with_aux(b["speech"], b["speech_lengths"])[2]["lid_logits"][0]  # [T, L] (batch of one: all valid)
        votes = torch.bincount(logits.argmax(-1), minlength=len(langs))
        confusion[item[3]][langs[int(votes.argmax())]] += 1
        stds.append(float(logits.std(0).mean()))
        target = torch.full((logits.size(0),), langs.index(item[3]))
        ces.append(float(torch.nn.functional.cross_entropy(logits, target)))
        if i_hi is not None and item[3] in ("hi", "mr"):
            margins[item[3]].append(float((logits[:, i_hi] - logits[:, i_mr]).mean()))
    correct = sum(confusion[l][l] for l in langs)
    total = sum(sum(r.values()) for r in confusion.values())
    return {
        "dev_lid_pct": round(100.0 * correct / total, 1),
        "dev_lid_per_lang_pct": {l: round(100.0 * confusion[l][l] / max(sum(confusion[l].values()), 1), 1) for l in langs},
        "confusion": {l: dict(confusion[l]) for l in langs},
        "logit_frame_std": float(np.mean(stds)),
        "dev_lid_ce": float(np.mean(ces)),
        "hi_minus_mr_logit": {k: float(np.mean(v)) for k, v in margins.items()},
    }


def adam_steps(model, state):
    """Mean |m| / (sqrt(v_hat) + eps) per part, from the optimizer state of a resume file."""
    opt = state["optimizers"][0]
    params = list(model.parameters())
    # ESPnet's optimizer state lists params in the order the optimizer saw them.
    order = [i for g in opt["param_groups"] for i in g["params"]]
    beta2 = opt["param_groups"][0].get("betas", (0.9, 0.999))[1]
    beta1 = opt["param_groups"][0].get("betas", (0.9, 0.999))[0]
    groups = parts(model)
    if len(order) != len(params):
        return None
    by_param = {}
    for k, p in zip(order, params if len(opt["param_groups"]) == 1 else _grouped(model, opt)):
        s = opt["state"].get(k)
        if not s:
            continue
        step = float(s["step"])
        m = s["exp_avg"] / (1 - beta1 ** step)
        v = s["exp_avg_sq"] / (1 - beta2 ** step)
        by_param[id(p)] = (m.abs() / (v.sqrt() + 1e-8)).flatten()
    out = {}
    for name, ids in groups.items():
        vals = [by_param[i] for i in ids if i in by_param]
        out[name] = float(torch.cat(vals).mean()) if vals else None
    return out


def _grouped(model, opt):
    """Parameters in optimizer order when the router has its own group (router last)."""
    router = {id(p) for p in model.encoder.router.parameters()}
    rest = [p for p in model.parameters() if id(p) not in router]
    return rest + [p for p in model.parameters() if id(p) in router]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exp", required=True, type=Path)
    p.add_argument("--checkpoint", action="append", help="checkpoint file(s) in --exp (repeatable)")
    p.add_argument("--data_root", default=Path("dump/raw"), type=Path)
    p.add_argument("--n_batches", type=int, default=4)
    p.add_argument("--n_dev", type=int, default=0, help="dev utterances (0: all; a fixed shuffle)")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    import espnet_plugins  # noqa: F401

    torch.set_num_threads(1)
    torch.manual_seed(0)
    train_utts = utterances(a.data_root, "train")
    dev_utts = utterances(a.data_root, "dev")
    if a.n_dev:
        dev_utts = random.Random(0).sample(dev_utts, a.n_dev)
    results = {}
    for ck in a.checkpoint or ["valid.loss.ave.pth"]:
        model, args, preprocess, state = load(a.exp, ck)
        langs = list(args.lang_list)
        r = {"dev": dev_study(model, dev_utts, preprocess, langs),
             "grad": gradient_study(model, train_utts, preprocess, langs, a.n_batches)}
        if state is not None:
            r["adam_step"] = adam_steps(model, state)
        results[ck] = r
        print(ck, json.dumps(r, indent=1))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"exp": str(a.exp), "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
