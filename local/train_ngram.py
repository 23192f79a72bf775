#!/usr/bin/env python3
"""Train one word n-gram LM per language (+ one pooled over all) with KenLM's lmplz.

    local/train_ngram.py --text dump/raw/train/text --utt2lang dump/raw/train/utt2lang \\
        --order 3 --out_dir exp/ngram_3gram [--lang_text hi=my_hindi.txt ...] \\
        [--report_oov test_id=dump/raw/test_id]

Default LM text: the training transcripts (Kaldi ``text``), split by ``utt2lang``; code-switched
utterances (several languages) go into the pooled LM only. ``--lang_text LANG=FILE`` replaces a
language's text with a plain-text file (one sentence per line, e.g. IndicCorp). Every line
goes through ``espnet_plugins.text.normalize_text``, the transcripts' normaliser.

Writes ``<lang>.bin`` / ``pooled.bin`` (KenLM binary, modified Kneser-Ney, ``lmplz
--discount_fallback`` so that tiny texts still train), ``<name>.unigrams`` (the word list the
decoder needs), ``<name>.txt`` (the text used) and ``lms.yaml`` (what each LM was trained
on: source, sentences, words, vocabulary). ``--report_oov NAME=DATA_DIR`` adds each test
set's OOV rate against its own language's LM and the pooled one to ``lms.yaml``.
Reruns skip a finished ``--out_dir`` (``lms.yaml`` exists).
"""
import argparse
import collections
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from espnet_plugins.text.normalize import normalize_text  # noqa: E402
from espnet_plugins.utils.io import atomic_write_text  # noqa: E402

POOLED = "pooled"


def find_tool(name: str, kenlm_bin: str = None) -> str:
    """``name`` from ``--kenlm_bin``, the active venv's bin, or PATH; else a clear error."""
    candidates = [Path(kenlm_bin) / name] if kenlm_bin else []
    candidates.append(Path(sys.executable).parent / name)
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    raise SystemExit(f"train_ngram: KenLM's {name} not found (looked in {[str(c) for c in candidates]}); "
                     "tools/install.sh builds it into the venv, or pass --kenlm_bin DIR")


def read_kaldi(path: Path) -> dict:
    out = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            fields = line.rstrip("\n").split(maxsplit=1)
            if not fields:
                continue
            out[fields[0]] = fields[1] if len(fields) > 1 else ""
    return out


def texts_by_language(text: Path, utt2lang: Path) -> dict:
    """{lang: [sentences]} from Kaldi text + utt2lang; several languages -> key None."""
    texts, langs = read_kaldi(text), read_kaldi(utt2lang)
    missing = sorted(set(texts) - set(langs))
    if missing:
        raise SystemExit(f"train_ngram: {len(missing)} utterances of {text} have no language in {utt2lang} "
                         f"(first: {missing[0]}); fix utt2lang")
    out = collections.defaultdict(list)
    for utt, sentence in texts.items():
        ls = sorted(set(langs[utt].split()))
        out[ls[0] if len(ls) == 1 else None].append(sentence)
    return out


def normalized_lines(lines) -> list:
    return [s for s in (normalize_text(x) for x in lines) if s]


def train_one(lines: list, order: int, out_prefix: Path, lmplz: str, build_binary: str, memory: str) -> dict:
    """lmplz -> ARPA -> KenLM binary; returns the text's statistics."""
    txt = out_prefix.with_suffix(".txt")
    atomic_write_text(txt, "".join(s + "\n" for s in lines))
    counts = collections.Counter(w for s in lines for w in s.split())
    atomic_write_text(out_prefix.with_suffix(".unigrams"), "".join(w + "\n" for w in sorted(counts)))
    with tempfile.TemporaryDirectory(dir=out_prefix.parent) as tmp:
        arpa = Path(tmp) / "lm.arpa"
        with open(txt, "rb") as fin, open(arpa, "wb") as fout:
            res = subprocess.run([lmplz, "-o", str(order), "-S", memory, "-T", tmp, "--discount_fallback"],
                                 stdin=fin, stdout=fout, stderr=subprocess.PIPE)
        if res.returncode != 0:
            raise SystemExit(f"train_ngram: lmplz failed on {txt}:\n{res.stderr.decode(errors='replace')[-2000:]}")
        binary = Path(tmp) / "lm.bin"
        res = subprocess.run([build_binary, str(arpa), str(binary)], capture_output=True)
        if res.returncode != 0:
            raise SystemExit(f"train_ngram: build_binary failed on {arpa}:\n{res.stderr.decode(errors='replace')[-2000:]}")
        os.replace(binary, out_prefix.with_suffix(".bin"))
    return {"lm": out_prefix.with_suffix(".bin").name, "unigrams": out_prefix.with_suffix(".unigrams").name,
            "sentences": len(lines), "words": sum(counts.values()), "vocabulary": len(counts)}


def oov_report(data_dir: Path, out_dir: Path, lms: dict) -> dict:
    """OOV rate (word tokens) of a Kaldi data dir against its language's LM and the pooled LM."""
    vocab = {name: set((out_dir / info["unigrams"]).read_text(encoding="utf-8").split())
             for name, info in lms.items()}
    by_lang = texts_by_language(data_dir / "text", data_dir / "utt2lang")
    report = {}
    for lang, lines in sorted(by_lang.items(), key=lambda kv: str(kv[0])):
        words = [w for s in normalized_lines(lines) for w in s.split()]
        row = {"words": len(words)}
        for name in ([lang] if lang in vocab else []) + [POOLED]:
            key = "own" if name == lang else POOLED
            row[f"oov_{key}"] = round(sum(w not in vocab[name] for w in words) / max(len(words), 1), 4)
        report[lang or "mixed"] = row
    words = [w for lines in by_lang.values() for s in normalized_lines(lines) for w in s.split()]
    report["all"] = {"words": len(words),
                     "oov_pooled": round(sum(w not in vocab[POOLED] for w in words) / max(len(words), 1), 4)}
    return report


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", required=True, help="Kaldi text (utt words...): the default LM text")
    p.add_argument("--utt2lang", required=True, help="Kaldi utt2lang for --text")
    p.add_argument("--lang_text", action="append", default=[], metavar="LANG=FILE",
                   help="plain text (one sentence a line) replacing LANG's transcripts")
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--out_dir", required=True)
    p.add_argument("--memory", default="10%", help="lmplz -S (sort memory)")
    p.add_argument("--kenlm_bin", default=None, help="directory with lmplz and build_binary")
    p.add_argument("--report_oov", action="append", default=[], metavar="NAME=DATA_DIR")
    args = p.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s (train_ngram) %(levelname)s: %(message)s")
    import yaml

    out_dir = Path(args.out_dir)
    manifest = out_dir / "lms.yaml"
    if manifest.exists():
        logging.info(f"{manifest} exists, skipping")
        return
    if not 1 <= args.order <= 6:
        raise SystemExit(f"train_ngram: --order {args.order}: lmplz here is built for orders 1-6")
    lmplz, build_binary = find_tool("lmplz", args.kenlm_bin), find_tool("build_binary", args.kenlm_bin)
    by_lang = texts_by_language(Path(args.text), Path(args.utt2lang))
    sources = {lang: f"{args.text} (utt2lang {args.utt2lang})" for lang in by_lang if lang}
    for spec in args.lang_text:
        lang, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            raise SystemExit(f"train_ngram: --lang_text {spec!r}: expected LANG=FILE with an existing file")
        by_lang[lang] = Path(path).read_text(encoding="utf-8").splitlines()
        sources[lang] = path
    out_dir.mkdir(parents=True, exist_ok=True)
    lms = {}
    for lang in sorted(k for k in by_lang if k):
        lines = normalized_lines(by_lang[lang])
        if not lines:
            raise SystemExit(f"train_ngram: no text for language {lang!r} ({sources[lang]})")
        lms[lang] = {**train_one(lines, args.order, out_dir / lang, lmplz, build_binary, args.memory),
                     "source": sources[lang]}
        logging.info(f"{lang}: {lms[lang]}")
    pooled = [s for lines in by_lang.values() for s in normalized_lines(lines)]
    lms[POOLED] = {**train_one(pooled, args.order, out_dir / POOLED, lmplz, build_binary, args.memory),
                   "source": "every language's text above" + (" + code-switched transcripts" if None in by_lang else "")}
    logging.info(f"{POOLED}: {lms[POOLED]}")
    info = {"order": args.order, "estimator": "KenLM lmplz (modified Kneser-Ney, --discount_fallback)",
            "langs": [k for k in lms if k != POOLED], "lms": lms}
    for spec in args.report_oov:
        name, _, d = spec.partition("=")
        info.setdefault("oov", {})[name] = oov_report(Path(d), out_dir, lms)
        logging.info(f"OOV {name}: {info['oov'][name]}")
    atomic_write_text(manifest, yaml.safe_dump(info, allow_unicode=True, sort_keys=False))  # last: marks done
    logging.info(f"wrote {manifest}")


if __name__ == "__main__":
    main()
