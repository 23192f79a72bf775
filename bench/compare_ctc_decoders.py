#!/usr/bin/env python3
"""pyctcdecode vs torchaudio's flashlight-text ``ctc_decoder`` on this corpus's char tokens.

Synthetic peaky CTC log-posteriors (3 frames per character, Gaussian noise sd 1.5, seed 0)
of 40 Hindi LM sentences; beam 10; search time alone (1 thread), and the WER each reaches
on 20 Hindi test_id sentences (74 % of test words are outside the LM's vocabulary) with
the Hindi 3-gram. Needs ``pip install flashlight-text`` (not a dependency of the toolkit:
see bench/results/lm_decoding.md for why). Run from the recipe directory:

    python ../../../bench/compare_ctc_decoders.py --ngram_dir exp/ngram_3gram
"""
import argparse
import time

import jiwer
import numpy as np
import torch

from espnet_plugins.inference.lm_decoding import CTCBeamDecoder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ngram_dir", default="exp/ngram_3gram")
    p.add_argument("--tokens", default="data/token_list/char/tokens.txt")
    p.add_argument("--test_text", default="dump/raw/test_id/text")
    args = p.parse_args()
    torch.set_num_threads(1)
    from torchaudio.models.decoder import ctc_decoder

    toks = [line.strip() for line in open(args.tokens, encoding="utf-8")]
    idx = {t: i for i, t in enumerate(toks)}
    rng = np.random.default_rng(0)

    def log_probs(sentence):
        seq = [idx["<space>"] if c == " " else idx.get(c, 1) for c in sentence]
        lp = np.full((3 * len(seq), len(toks)), -8.0)
        for i, tok in enumerate(seq):
            lp[3 * i, tok] = 0
            lp[3 * i + 1, 0] = lp[3 * i + 2, 0] = 0
        lp += rng.normal(0, 1.5, lp.shape)
        return (lp - np.log(np.exp(lp).sum(1, keepdims=True))).astype(np.float32)

    lps = [log_probs(s) for s in open(f"{args.ngram_dir}/hi.txt", encoding="utf-8").read().splitlines()[:40]]
    audio = sum(len(x) for x in lps) * 0.04
    ours = CTCBeamDecoder(toks, args.ngram_dir, beam_size=10)
    for lm in (None, "hi"):
        ours.decode(lps[0], lm)
        t = time.perf_counter()
        for x in lps:
            ours.decode(x, lm)
        print(f"pyctcdecode, LM {lm}: search RTF {(time.perf_counter() - t) / audio:.4f}")
    words = open(f"{args.ngram_dir}/hi.unigrams", encoding="utf-8").read().split()
    with open("/tmp/compare_ctc_decoders_lexicon.txt", "w", encoding="utf-8") as f:
        f.writelines(f"{w}\t{' '.join(w)} <space>\n" for w in words)
    common = dict(tokens=toks, beam_size=10, blank_token="<blank>", sil_token="<space>", unk_word="<unk>")
    free = ctc_decoder(lexicon=None, lm=None, **common)
    lexicon = ctc_decoder(lexicon="/tmp/compare_ctc_decoders_lexicon.txt", lm=f"{args.ngram_dir}/hi.bin",
                          lm_weight=0.5, word_score=1.0, **common)
    for name, dec in (("flashlight lexicon-free, no LM", free), ("flashlight lexicon + hi 3-gram", lexicon)):
        t = time.perf_counter()
        for x in lps:
            dec(torch.from_numpy(x)[None])
        print(f"{name}: search RTF {(time.perf_counter() - t) / audio:.4f}")
    test = [line.split(" ", 1)[1].strip() for line in open(args.test_text, encoding="utf-8") if line.startswith("hi-")][:20]
    tl = [log_probs(s) for s in test]
    ours.reset_params(0.5, 1.0, -3.0)
    print("WER on Hindi test_id text: flashlight lexicon + LM",
          round(jiwer.wer(test, [" ".join(lexicon(torch.from_numpy(x)[None])[0][0].words) for x in tl]), 3),
          "| pyctcdecode + LM", round(jiwer.wer(test, [ours.decode(x, "hi")[0].text for x in tl]), 3),
          "| pyctcdecode, no LM", round(jiwer.wer(test, [ours.decode(x)[0].text for x in tl]), 3))


if __name__ == "__main__":
    main()
