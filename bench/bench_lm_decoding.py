#!/usr/bin/env python3
"""Greedy CTC vs beam search vs beam + n-gram LMs (routed, mixed, oracle, pooled) on one model.

Each utterance is encoded once (1 torch thread); every decoder then runs on the same CTC
log-posteriors, so the variants differ only in the search. RTF of a variant = (encoder +
its decoder) CPU seconds (process time: on a machine shared with other jobs it
estimates the wall time alone, which a loaded machine inflates) / audio seconds. ``--tune_set dev`` first picks the LM weight, word
bonus and OOV penalty on that set (``--tune_utts`` utterances, lm_mode ``--tune_mode``) from
the grid, then decodes ``--test_sets`` with them. Writes ``<out>/<variant>/<set>/{text,lang,
rtf.json}`` (scorable by local/score.py), ``<out>/results.json`` and ``<out>/results.md``
(WER / CER per set, RTF, and the bootstrap of WER and CER of ``--compare A,B`` pairs on
``--sig_set``, utterances resampled as local/significance.py does).

    python bench/bench_lm_decoding.py --exp egs/indic_synth/asr1/exp/asr_lr_moe \\
        --ngram_dir egs/indic_synth/asr1/exp/ngram_3gram --data_root egs/indic_synth/asr1/dump/raw \\
        --tune_set dev --test_sets test_id test_ood_noise --out bench/results/lm_decoding
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "local"))

VARIANTS = ("greedy", "beam", "routed", "mixed", "oracle", "pooled")


def read_map(path: Path) -> dict:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            out[key] = value.strip()
    return out


@torch.no_grad()
def encode_set(s2t, data_dir: Path, max_utts: int = 0) -> list:
    """[(utt, log_probs [T, V], router posterior or None, audio seconds, encoder seconds)]."""
    import soundfile as sf

    from espnet_plugins.inference.ctc_decoding import ctc_greedy

    items = sorted(read_map(data_dir / "wav.scp").items())
    if max_utts and max_utts < len(items):  # every k-th: ids start with the language, so all stay in
        items = [items[i * len(items) // max_utts] for i in range(max_utts)]
    out = []
    for utt, path in items:
        wav = torch.as_tensor(sf.read(path, dtype="float32")[0])
        t0 = time.process_time()
        speech, lengths = wav[None], torch.tensor([wav.numel()])
        enc, enc_lens, aux = s2t.model.encode_with_aux(speech, lengths)
        if isinstance(enc, tuple):
            enc = enc[0]
        log_probs = s2t.model.ctc.log_softmax(enc)[0, : int(enc_lens[0])]
        _, posts = s2t._utterance_langs(aux, 1)
        greedy = ctc_greedy(log_probs[None], enc_lens[:1])[0]
        enc_sec = time.process_time() - t0
        out.append((utt, log_probs.numpy(), posts[0], greedy, wav.numel() / 16000, enc_sec))
    return out


def decode_variant(s2t, variant: str, encoded: list, utt2lang: dict) -> tuple[dict, dict, float]:
    """Hypotheses {utt: text}, LM used {utt: name}, decoder seconds."""
    hyps, lms, sec = {}, {}, 0.0
    for utt, lp, post, greedy, _, _ in encoded:
        t0 = time.process_time()
        if variant == "greedy":
            tokens = s2t.converter.ids2tokens(greedy)
            text = s2t.tokenizer.tokens2text(tokens) if s2t.tokenizer is not None else "".join(tokens)
            lm = None
        else:
            s2t.lm_mode = "none" if variant == "beam" else variant
            lm = s2t._lm_for(post, utt2lang[utt].split())
            text = s2t.beam_decoder.decode(lp, lm)[0].text
        sec += time.process_time() - t0
        hyps[utt] = text
        lms[utt] = lm if not isinstance(lm, dict) else "+".join(f"{k}:{v:.2f}" for k, v in lm.items())
    return hyps, lms, sec


def word_char_errors(ref_dir: Path, hyps: dict):
    """Per utterance (word errors, ref words, char errors, ref chars), ids sorted; score.py's rules."""
    from score import char_tokens, per_utterance_counts

    from espnet_plugins.text.normalize import normalize_text

    ref = read_map(ref_dir / "text")
    ids = sorted(u for u in ref if u in hyps)
    refs = [normalize_text(ref[u]) for u in ids]
    outs = [normalize_text(hyps.get(u, "")) for u in ids]
    w = per_utterance_counts([r.split() for r in refs], [h.split() for h in outs])
    c = per_utterance_counts([char_tokens(r) for r in refs], [char_tokens(h) for h in outs])
    return ([x.errors for x in w], [len(r.split()) for r in refs], [x.errors for x in c],
            [len(char_tokens(r)) for r in refs])


def rate(errors, ref) -> float:
    return 100.0 * sum(errors) / max(sum(ref), 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", type=Path, required=True, help="exp dir with config.yaml + --model_file")
    p.add_argument("--model_file", default="valid.loss.ave.pth")
    p.add_argument("--ngram_dir", type=Path, required=True)
    p.add_argument("--data_root", type=Path, required=True, help="dump/raw")
    p.add_argument("--test_sets", nargs="+", required=True)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--beam_size", type=int, default=10)
    p.add_argument("--lm_weight", type=float, default=0.5)
    p.add_argument("--word_score", type=float, default=1.0)
    p.add_argument("--unk_score", type=float, default=-10.0)
    p.add_argument("--tune_set", default=None, help="pick lm_weight / word_score / unk_score on this set first")
    p.add_argument("--tune_mode", default="oracle", help="lm_mode used for tuning")
    p.add_argument("--tune_utts", type=int, default=120)
    p.add_argument("--utts_per_set", type=int, default=0, help="decode every k-th utterance of the test sets "
                   "but --sig_set, this many (0: all)")
    p.add_argument("--grid_lm_weight", type=float, nargs="+", default=[0.2, 0.5, 1.0])
    p.add_argument("--grid_word_score", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    p.add_argument("--grid_unk_score", type=float, nargs="+", default=[-1.0, -3.0, -10.0])
    p.add_argument("--compare", nargs="+", default=["routed,greedy", "routed,beam", "oracle,routed"])
    p.add_argument("--sig_set", default="test_id")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    import espnet_plugins  # noqa: F401
    from significance import relative_change

    from espnet_plugins.inference.speech2text import Speech2Text
    from espnet_plugins.utils.io import atomic_write_text

    s2t = Speech2Text(str(args.exp / "config.yaml"), str(args.exp / args.model_file), decoding="ctc_prefix_beam",
                      beam_size=args.beam_size, ngram_dir=str(args.ngram_dir), lm_mode="none",
                      lm_weight=args.lm_weight, word_score=args.word_score, unk_score=args.unk_score)
    params = {"lm_weight": args.lm_weight, "word_score": args.word_score, "unk_score": args.unk_score}
    report = {"exp": str(args.exp), "ngram_dir": str(args.ngram_dir), "beam_size": args.beam_size,
              "threads": torch.get_num_threads()}
    if args.tune_set:
        d = args.data_root / args.tune_set
        encoded = encode_set(s2t, d, args.tune_utts)
        utt2lang = read_map(d / "utt2lang")
        grid = []
        for lw, ws, us in itertools.product(args.grid_lm_weight, args.grid_word_score, args.grid_unk_score):
            s2t.beam_decoder.reset_params(lw, ws, us)
            hyps, _, _ = decode_variant(s2t, args.tune_mode, encoded, utt2lang)
            we, wr, ce, cr = word_char_errors(d, hyps)
            wer, cer = rate(we, wr), rate(ce, cr)
            grid.append({"lm_weight": lw, "word_score": ws, "unk_score": us, "wer": wer, "cer": cer})
            print(f"tune {args.tune_set} ({len(encoded)} utts, {args.tune_mode}): {grid[-1]}", flush=True)
        best = min(grid, key=lambda g: (g["wer"], g["cer"]))
        params = {k: best[k] for k in ("lm_weight", "word_score", "unk_score")}
        report["tuning"] = {"set": args.tune_set, "utts": len(encoded), "mode": args.tune_mode, "grid": grid,
                            "chosen": params}
    s2t.beam_decoder.reset_params(**params)
    report["lm_params"] = params
    rows, errors = {}, {}
    for name in args.test_sets:
        d = args.data_root / name
        encoded = encode_set(s2t, d, 0 if name == args.sig_set else args.utts_per_set)
        utt2lang = read_map(d / "utt2lang")
        audio = sum(e[4] for e in encoded)
        enc_sec = sum(e[5] for e in encoded)
        for variant in args.variants:
            if variant in ("routed", "mixed") and encoded and encoded[0][2] is None:
                continue  # no router
            hyps, lms, dec_sec = decode_variant(s2t, variant, encoded, utt2lang)
            out = args.out / variant / name
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / "text", "".join(f"{u} {h}".rstrip() + "\n" for u, h in sorted(hyps.items())))
            atomic_write_text(out / "lm", "".join(f"{u} {m}\n" for u, m in sorted(lms.items())))
            rtf = {"audio_seconds": audio, "decode_seconds": enc_sec + dec_sec, "encoder_seconds": enc_sec,
                   "search_seconds": dec_sec, "rtf": (enc_sec + dec_sec) / audio, "threads": 1,
                   "clock": "process CPU time"}
            (out / "rtf.json").write_text(json.dumps(rtf, indent=1))
            we, wr, ce, cr = word_char_errors(d, hyps)  # over the decoded utterances only
            errors[(variant, name)] = (we, wr, ce, cr)
            rows.setdefault(variant, {})[name] = {"wer": rate(we, wr), "cer": rate(ce, cr), "rtf": rtf["rtf"],
                                                  "utts": len(encoded),
                                                  "search_rtf": dec_sec / audio}
            print(f"{variant:7s} {name:17s} WER {rate(we, wr):5.1f} CER {rate(ce, cr):5.1f} "
                  f"RTF {rtf['rtf']:.4f} (search {dec_sec / audio:.4f})", flush=True)
    report["rows"] = rows
    sig = {}
    for pair in args.compare:
        a, b = pair.split(",")
        if (a, args.sig_set) not in errors or (b, args.sig_set) not in errors:
            continue
        ea, eb = errors[(a, args.sig_set)], errors[(b, args.sig_set)]
        import numpy as np

        sig[pair] = {
            "wer": relative_change(np.asarray([ea[0]], float), np.asarray([eb[0]], float), np.asarray(ea[1], float)),
            "cer": relative_change(np.asarray([ea[2]], float), np.asarray([eb[2]], float), np.asarray(ea[3], float)),
        }
    report["significance"] = {"set": args.sig_set, "pairs": sig}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=1, default=float))
    sets = args.test_sets
    md = [f"LM params: {params}; beam {args.beam_size}; 1 thread; RTF = (encoder + search) CPU seconds / audio seconds", "",
          "| decoding | " + " | ".join(f"{s} WER / CER" for s in sets) + " | RTF (" + sets[0] + ") |",
          "|---|" + "---|" * (len(sets) + 1)]
    for variant, per_set in rows.items():
        cells = [f"{per_set[s]['wer']:.1f} / {per_set[s]['cer']:.1f}" if s in per_set else "-" for s in sets]
        md.append(f"| {variant} | " + " | ".join(cells) + f" | {per_set[sets[0]]['rtf']:.4f} |")
    for pair, r in sig.items():
        md.append(f"\n{pair.replace(',', ' vs ')} on {args.sig_set}: WER {r['wer']['relative_pct']:+.1f} % "
                  f"[{r['wer']['ci95'][0]:+.1f}, {r['wer']['ci95'][1]:+.1f}], CER {r['cer']['relative_pct']:+.1f} % "
                  f"[{r['cer']['ci95'][0]:+.1f}, {r['cer']['ci95'][1]:+.1f}] (relative; 95 % bootstrap over utterances)")
    (args.out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
