#!/usr/bin/env python3
"""CUDA checks and GPU training cost of every shipped preset (needs a GPU; not a test).

Each ``conf/train_*.yaml`` is built as ``tests/test_presets.py`` builds it (ESPnet's parser,
``MoEASRTask.build_model``; ``frontend: frozen_encoder`` presets on a random-weight base
model saved like an experiment directory) and checked on CUDA against the CPU:

* agreement: the same weights and batch in eval mode give the same loss (relative
  difference <= ``--tol``) and the same CTC log-posteriors (max |diff|) on both devices,
  with TF32 off so that CUDA computes in fp32 as the CPU does;
* one training step on CUDA (fp32, then bf16 autocast): finite loss, statistics and
  gradients, and the optimizer changes the weights;
* cost: median time of a training step (forward + backward + Adam) on ``--batch`` x
  ``--seconds`` s of noise, fp32 and bf16 autocast, interleaved over the presets, and the
  peak CUDA memory of one fp32 step (training throughput of each preset vs dense);
* grouped GEMM: an expert FFN (``MoEFeedForward``, forward + backward under bf16
  autocast) with the per-expert matmul loop vs ``torch.nn.functional.grouped_mm``
  (:func:`espnet_plugins.asr.moe.dispatch.set_grouped_mm`), median times, their ratio and
  the largest difference of output and weight gradient, at the presets' sizes and larger;
* RTF: eval-mode encoder + CTC greedy (as decoding runs it, batch 1) of the presets in
  ``--rtf_presets`` on ``--rtf_utts`` utterances of ``--rtf_seconds`` s, fp32 and bf16.

Writes ``<out>.json`` and ``<out>.md``; exits 1 when a check fails.

    python bench/bench_cuda.py --out bench/results/bench_cuda
"""
import argparse
import copy
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import espnet_plugins  # noqa: E402,F401
import torch  # noqa: E402
import yaml  # noqa: E402

PRESETS = sorted((ROOT / "conf").glob("train_*.yaml"))
BASE_PRESET = ROOT / "conf" / "train_dense_conformer.yaml"
LANGS = ["hi", "mr", "ta", "te"]
TOKENS = ["<blank>", "<unk>"] + [chr(0x905 + i) for i in range(60)] + ["<sos/eos>"]


def parse(preset: Path, workdir: Path, *extra: str):
    from espnet_plugins.tasks.asr import MoEASRTask

    return MoEASRTask.get_parser().parse_args([
        "--config", str(preset), "--token_list", str(workdir / "tokens.txt"),
        "--lang_list", str(workdir / "langs"), "--normalize", "none", "--frontend_conf", "fs=16k", *extra])


def frozen_base(workdir: Path) -> list:
    """A random-weight dense conformer saved as run.sh's --base_exp expects."""
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    from espnet_plugins.tasks.asr import MoEASRTask

    exp = workdir / "asr_base"
    if not (exp / "model.pth").exists():
        exp.mkdir(parents=True, exist_ok=True)
        args = parse(BASE_PRESET, workdir)
        torch.manual_seed(0)
        model = MoEASRTask.build_model(args)
        with open(exp / "config.yaml", "w", encoding="utf-8") as f:
            yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False)
        torch.save(model.state_dict(), exp / "model.pth")
    return ["--frontend_conf", f"asr_train_config={exp / 'config.yaml'}",
            "--frontend_conf", f"asr_model_file={exp / 'model.pth'}"]


def tiny_hf_encoder(path: Path) -> Path:
    """A 2-layer x 32 Wav2Vec2Model (MMS's class) saved to ``path``, built once."""
    if not (path / "config.json").is_file():
        from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

        torch.manual_seed(0)
        cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                             feat_extract_norm="layer", do_stable_layer_norm=True, vocab_size=8)
        Wav2Vec2Model(cfg).save_pretrained(path)
        Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                 return_attention_mask=True).save_pretrained(path)
    return path


def build(preset: Path, workdir: Path):
    from espnet_plugins.tasks.asr import MoEASRTask

    conf = yaml.safe_load(preset.read_text(encoding="utf-8"))
    extra = frozen_base(workdir) if conf.get("frontend") == "frozen_encoder" else []
    if conf.get("frontend") == "hf_encoder":  # no hub here or on the device: a tiny random model of its class
        extra = ["--frontend_conf", f"model={tiny_hf_encoder(workdir / 'hf_encoder')}",
                 "--preencoder_conf", "input_size=32"]
    args = parse(preset, workdir, *extra)
    torch.manual_seed(0)
    model = MoEASRTask.build_model(args)
    return model, args


def make_batch(n: int, seconds: float, seed: int, device: str) -> dict:
    """``n`` utterances of noise, the last one 20 % shorter (padding is exercised)."""
    g = torch.Generator().manual_seed(seed)
    samples = int(seconds * 16000)
    speech = 0.1 * torch.randn(n, samples, generator=g)
    lengths = torch.full((n,), samples)
    lengths[-1] = int(samples * 0.8)
    speech[-1, lengths[-1]:] = 0.0
    chars = max(2, int(seconds * 10))
    text = torch.randint(2, len(TOKENS) - 1, (n, chars), generator=g)
    text_lengths = torch.full((n,), chars)
    text_lengths[-1] = int(chars * 0.8)
    text[-1, text_lengths[-1]:] = -1
    b = dict(speech=speech, speech_lengths=lengths, text=text, text_lengths=text_lengths,
             lang=torch.randint(0, len(LANGS), (n, 1), generator=g), lang_lengths=torch.ones(n, dtype=torch.long))
    return {k: v.to(device) for k, v in b.items()}


def ctc_logp(model, b):
    enc, enc_lens = model.encode(b["speech"], b["speech_lengths"])
    if isinstance(enc, tuple):  # intermediate CTC: (final output, [(layer, output), ...])
        enc = enc[0]
    return model.ctc.log_softmax(enc), enc_lens


def agreement(cpu_model, b_cpu, tol: float, device: str) -> dict:
    cuda_model = copy.deepcopy(cpu_model).to(device).eval()
    cpu_model.eval()
    b_cuda = {k: v.to(device) for k, v in b_cpu.items()}
    with torch.no_grad():
        loss_cpu = float(cpu_model(**b_cpu)[0])
        loss_cuda = float(cuda_model(**b_cuda)[0])
        logp_cpu, lens_cpu = ctc_logp(cpu_model, b_cpu)
        logp_cuda, lens_cuda = ctc_logp(cuda_model, b_cuda)
    mask = torch.arange(logp_cpu.size(1))[None, :] < lens_cpu[:, None]
    diff = (logp_cpu - logp_cuda.cpu()).abs()[mask].max().item()
    rel = abs(loss_cpu - loss_cuda) / max(abs(loss_cpu), 1e-8)
    return {"loss_cpu": loss_cpu, "loss_cuda": loss_cuda, "loss_rel_diff": rel, "logp_max_abs_diff": diff,
            "lengths_equal": bool(torch.equal(lens_cpu, lens_cuda.cpu())),
            "ok": rel <= tol and diff <= 100 * tol and bool(torch.equal(lens_cpu, lens_cuda.cpu()))}


def train_step(model, opt, b, bf16: bool):
    with torch.autocast(b["speech"].device.type, dtype=torch.bfloat16, enabled=bf16):
        loss, stats, _ = model(**b)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss, stats


def step_check(model, args, b, bf16: bool) -> dict:
    from espnet_plugins.tasks.asr import MoEASRTask

    model = copy.deepcopy(model).to(b["speech"].device).train()
    opt = MoEASRTask.build_optimizers(args, model)[0]
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    loss, stats = train_step(model, opt, b, bf16)
    bad_stats = [k for k, v in stats.items() if v is not None and not bool(torch.isfinite(v).all())]
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    finite_grads = all(bool(torch.isfinite(g).all()) for g in grads)
    changed = sum(not torch.equal(p.detach(), before[n]) for n, p in model.named_parameters() if n in before)
    return {"loss": float(loss.detach()), "nonfinite_stats": bad_stats, "grads": len(grads), "finite_grads": finite_grads,
            "params_changed": changed,
            "ok": bool(torch.isfinite(loss)) and not bad_stats and finite_grads and changed > 0}


def cost(models: dict, b: dict, repeats: int, warmup: int) -> dict:
    from espnet_plugins.tasks.asr import MoEASRTask

    state = {}
    for name, (model, args) in models.items():
        m = copy.deepcopy(model).cuda().train()
        state[name] = (m, MoEASRTask.build_optimizers(args, m)[0])
    times = {(n, bf16): [] for n in models for bf16 in (False, True)}
    for rep in range(warmup + repeats):
        order = list(state) if rep % 2 == 0 else list(state)[::-1]
        for n in order:
            for bf16 in (False, True):
                torch.cuda.synchronize()
                t = time.perf_counter()
                train_step(*state[n], b, bf16)
                torch.cuda.synchronize()
                if rep >= warmup:
                    times[(n, bf16)].append(time.perf_counter() - t)
    out = {}
    for n, (m, opt) in state.items():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        train_step(m, opt, b, False)
        torch.cuda.synchronize()
        out[n] = {"step_fp32_s": statistics.median(times[(n, False)]),
                  "step_bf16_s": statistics.median(times[(n, True)]),
                  "peak_step_MiB": (torch.cuda.max_memory_allocated() - base) / 2**20,
                  "params_M": sum(p.numel() for p in m.parameters()) / 1e6}
        del state[n]
    return out


# (experts, tokens, model size, hidden size): the presets' FFN (144 / 576, 4 languages,
# 32 utterances x 4 s after 4x subsampling) and a larger model with 8 and 16 experts.
MOE_SHAPES = [(4, 3200, 144, 576), (8, 12800, 512, 2048), (16, 12800, 512, 2048)]


def moe_bench(device: str, repeats: int, warmup: int, shapes=MOE_SHAPES) -> list:
    """Expert FFN forward + backward: the matmul loop vs grouped_mm, bf16 autocast on CUDA
    (fp32 on the CPU, where grouped_mm runs PyTorch's reference kernel)."""
    from espnet_plugins.asr.moe.dispatch import DispatchPlan, grouped_mm_mode
    from espnet_plugins.asr.moe.moe_feed_forward import MoEFeedForward

    rows = []
    bf16 = device == "cuda"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for experts, tokens, d, hidden in shapes:
        torch.manual_seed(0)
        ffn = MoEFeedForward(experts, d, hidden, dropout_rate=0.0).to(device)
        x = torch.randn(1, tokens, d, device=device, requires_grad=True)
        # skewed routing with one expert left empty, as a language router gives
        probs = torch.arange(1, experts + 1, dtype=torch.float)
        probs[-1] = 0
        index = torch.multinomial(probs / probs.sum(), tokens, replacement=True).view(1, tokens).to(device)
        out, times = {}, {}
        for mode in ("loop", "grouped_mm"):
            times[mode] = []
            for rep in range(warmup + repeats):
                ffn.zero_grad(set_to_none=True)
                x.grad = None
                sync()
                t = time.perf_counter()
                with grouped_mm_mode(mode), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                    plan = DispatchPlan.build(index, experts)
                    y = ffn(x, plan)
                y.float().square().mean().backward()
                sync()
                if rep >= warmup:
                    times[mode].append(time.perf_counter() - t)
            out[mode] = (y.detach().float(), ffn.w_1.weight.grad.detach().clone())
        ref_y, ref_g = out["loop"]
        got_y, got_g = out["grouped_mm"]
        loop_s, gmm_s = statistics.median(times["loop"]), statistics.median(times["grouped_mm"])
        rows.append({"experts": experts, "tokens": tokens, "d_model": d, "hidden": hidden,
                     "dtype": "bf16" if bf16 else "fp32", "loop_ms": 1e3 * loop_s, "grouped_mm_ms": 1e3 * gmm_s,
                     "speedup": loop_s / gmm_s,
                     "y_max_rel_diff": float((ref_y - got_y).abs().max() / ref_y.abs().max()),
                     "grad_w1_max_rel_diff": float((ref_g - got_g).abs().max() / ref_g.abs().max()),
                     "empty_expert_grad_zero": bool(torch.count_nonzero(got_g[-1]) == 0)})
        print("grouped_mm", json.dumps(rows[-1]), flush=True)
    return rows


RTF_PRESETS = ["dense_conformer", "blr_moe", "lr_moe", "smear_blr_moe"]


def rtf(models: dict, device: str, utts: int, seconds: float) -> dict:
    """Real-time factor of eval-mode encoder + CTC greedy, one utterance at a time."""
    out = {}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    batches = [make_batch(1, seconds, 100 + i, device) for i in range(utts)]
    for name, (model, _) in models.items():
        m = copy.deepcopy(model).to(device).eval()
        out[name] = {}
        for bf16 in (False, True):
            with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                for b in batches[:2]:  # warm-up
                    ctc_logp(m, b)[0].argmax(-1)
                sync()
                t = time.perf_counter()
                for b in batches:
                    ctc_logp(m, b)[0].argmax(-1).cpu()
                sync()
            out[name]["bf16" if bf16 else "fp32"] = (time.perf_counter() - t) / (utts * seconds)
        del m
    return out


def markdown(r: dict) -> str:
    a = r["args"]
    lines = [f"# CUDA checks and GPU cost of every preset ({r['gpu']}, torch {r['torch']})", "",
             f"Command: `{r['command']}`", "",
             f"Agreement: eval mode, same weights and {a['check_batch']} utterances of {a['check_seconds']} s "
             f"noise on CPU and CUDA (TF32 off); tolerance {a['tol']:g} relative on the loss. "
             "Steps: one fp32 and one bf16-autocast training step on CUDA.", "",
             "| preset | loss CPU | loss CUDA | rel diff | max abs diff CTC log-post. | fp32 step | bf16 step |",
             "|---|---|---|---|---|---|---|"]
    for n, c in r["checks"].items():
        ag, s32, s16 = c["agreement"], c["step_fp32"], c["step_bf16"]
        lines.append(f"| {n} | {ag['loss_cpu']:.4f} | {ag['loss_cuda']:.4f} | {ag['loss_rel_diff']:.1e} | "
                     f"{ag['logp_max_abs_diff']:.1e} | {'ok' if s32['ok'] else 'FAIL'} | "
                     f"{'ok' if s16['ok'] else 'FAIL'} |")
    lines += ["", f"All checks passed: **{r['all_ok']}**.", ""]
    if r.get("cost"):
        lines += [f"Training step (forward + backward + Adam) on {a['batch']} x {a['seconds']} s of noise, "
                  f"median of {a['repeats']} after {a['warmup']} warm-up, presets interleaved:", "",
                  "| preset | params M | fp32 step ms | bf16 autocast step ms | audio s / s (fp32) | "
                  "throughput vs dense (fp32) | peak step memory MiB |", "|---|---|---|---|---|---|---|"]
        dense = r["cost"].get("dense_conformer", {}).get("step_fp32_s")
        for n, c in r["cost"].items():
            vs = f"{dense / c['step_fp32_s']:.2f}x" if dense else "-"
            lines.append(f"| {n} | {c['params_M']:.2f} | {1e3 * c['step_fp32_s']:.1f} | {1e3 * c['step_bf16_s']:.1f} | "
                         f"{a['batch'] * a['seconds'] / c['step_fp32_s']:.0f} | {vs} | {c['peak_step_MiB']:.0f} |")
    if r.get("grouped_mm"):
        lines += ["", "Expert FFN (MoEFeedForward) forward + backward, per-expert matmul loop vs "
                  "`torch.nn.functional.grouped_mm`, one expert without tokens:", "",
                  "| experts | tokens | d_model | hidden | dtype | loop ms | grouped_mm ms | speed-up | "
                  "max rel diff y | max rel diff grad | empty expert grad 0 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for g in r["grouped_mm"]:
            lines.append(f"| {g['experts']} | {g['tokens']} | {g['d_model']} | {g['hidden']} | {g['dtype']} | "
                         f"{g['loop_ms']:.2f} | {g['grouped_mm_ms']:.2f} | {g['speedup']:.2f}x | "
                         f"{g['y_max_rel_diff']:.1e} | {g['grad_w1_max_rel_diff']:.1e} | {g['empty_expert_grad_zero']} |")
    if r.get("rtf"):
        lines += ["", f"RTF (eval encoder + CTC greedy, batch 1, {a['rtf_utts']} x {a['rtf_seconds']} s of noise):", "",
                  "| preset | RTF fp32 | RTF bf16 |", "|---|---|---|"]
        for n, v in r["rtf"].items():
            lines.append(f"| {n} | {v['fp32']:.5f} | {v['bf16']:.5f} |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output path stem (.json/.md)")
    p.add_argument("--presets", nargs="*", help="preset stems without train_ (default: every conf/train_*.yaml)")
    p.add_argument("--tol", type=float, default=1e-4, help="relative loss difference CPU vs CUDA")
    p.add_argument("--check_batch", type=int, default=3)
    p.add_argument("--check_seconds", type=float, default=2.0)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no_cost", action="store_true", help="checks only")
    p.add_argument("--rtf_presets", nargs="*", default=RTF_PRESETS, help="presets timed for RTF (none: skip)")
    p.add_argument("--rtf_utts", type=int, default=20)
    p.add_argument("--rtf_seconds", type=float, default=4.0)
    p.add_argument("--no_grouped_mm", action="store_true", help="skip the grouped GEMM vs loop benchmark")
    p.add_argument("--device", default="cuda", help="cpu: a dry run of the checks (CPU against itself)")
    args = p.parse_args()
    if args.device == "cpu":  # dry run: small sizes
        args.no_cost = True
        args.rtf_utts, args.rtf_seconds = 2, 1.0
    elif not torch.cuda.is_available():
        sys.exit("bench_cuda.py needs a CUDA device; torch.cuda.is_available() is False")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    presets = PRESETS
    if args.presets:
        presets = [ROOT / "conf" / f"train_{n}.yaml" for n in args.presets]
    workdir = Path(tempfile.mkdtemp(prefix="bench_cuda_"))
    (workdir / "tokens.txt").write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
    (workdir / "langs").write_text("\n".join(LANGS) + "\n", encoding="utf-8")

    checks, models = {}, {}
    b_check = make_batch(args.check_batch, args.check_seconds, 0, "cpu")
    for preset in presets:
        name = preset.stem[len("train_"):]
        model, targs = build(preset, workdir)
        torch.manual_seed(1)
        ag = agreement(model, b_check, args.tol, args.device)
        b_cuda = {k: v.to(args.device) for k, v in b_check.items()}
        checks[name] = {"agreement": ag, "step_fp32": step_check(model, targs, b_cuda, False),
                        "step_bf16": step_check(model, targs, b_cuda, True)}
        print(name, json.dumps(checks[name]), flush=True)
        models[name] = (model, targs)
    all_ok = all(c["agreement"]["ok"] and c["step_fp32"]["ok"] and c["step_bf16"]["ok"] for c in checks.values())

    torch.backends.cuda.matmul.allow_tf32 = True  # the cost is measured as training runs (TF32 allowed)
    torch.backends.cudnn.allow_tf32 = True
    result = {"command": "python bench/bench_cuda.py " + " ".join(sys.argv[1:]), "args": vars(args),
              "gpu": torch.cuda.get_device_name() if args.device == "cuda" else "no GPU (dry run)", "torch": torch.__version__, "machine": platform.machine(),
              "checks": checks, "all_ok": all_ok}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write():  # after each part, so a run cut short keeps what it measured
        out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        out.with_suffix(".md").write_text(markdown(result))

    write()
    if not args.no_grouped_mm:
        shapes = MOE_SHAPES if args.device == "cuda" else [(4, 256, 16, 32)]
        result["grouped_mm"] = moe_bench(args.device, args.repeats if args.device == "cuda" else 2,
                                         args.warmup if args.device == "cuda" else 1, shapes)
        all_ok = all_ok and all(g["empty_expert_grad_zero"] and g["y_max_rel_diff"] < 5e-2
                                for g in result["grouped_mm"])
        result["all_ok"] = all_ok
        write()
    if not args.no_cost:
        result["cost"] = cost(models, make_batch(args.batch, args.seconds, 1, "cuda"), args.repeats, args.warmup)
        write()
    rtf_models = {n: models[n] for n in args.rtf_presets if n in models}
    if rtf_models:
        result["rtf"] = rtf(rtf_models, args.device, args.rtf_utts, args.rtf_seconds)
        write()
    print(markdown(result))
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
