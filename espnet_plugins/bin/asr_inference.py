"""Decode a data set into ``--output_dir``: ``text``, ``token``, ``rtf.json``, and for MoE
models ``lang`` (router LID), ``route_frac`` (share of frames per language expert) and
``smear_gate`` (SMEAR gate ḡ per utterance).

``--sets_file`` decodes several data sets with one model load (run.sh: one process per
job for all test sets, instead of one per job and set); each line is
``<wav.scp> <key_file or -> <output_dir> [<utt2lang for --allowed_langs oracle*>]``.

CTC greedy (batched) or CTC prefix beam search through :class:`Speech2Text`; any model
config this package or stock ESPnet can build. The beam search (pyctcdecode) takes word
n-gram LMs (``--ngram_dir``, run.sh stage 4) chosen per utterance by ``--lm_mode`` and
writes ``nbest``, ``words`` (CTM-like: utt 1 start duration word) and ``lm`` too. ``--allowed_langs hi,mr`` applies a
language prior (``--prior_mode hard`` = expert pruning, ``soft`` = bias).
"""
import argparse
import functools
import json
import logging
import sys
import time
from pathlib import Path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--asr_train_config", default=None, help="config.yaml (or --model_tag / --model_file)")
    p.add_argument("--asr_model_file", default=None, help="checkpoint (or --model_tag / --model_file)")
    p.add_argument("--model_tag", default=None,
                   help="a packed zip (run.sh stage 11), its unpacked directory, or a Hugging Face repo id "
                        "owner/name[@revision] (downloaded through huggingface_hub unless HF_HUB_OFFLINE=1)")
    p.add_argument("--model_file", default=None, help="a packed zip or its unpacked directory (local --model_tag)")
    p.add_argument("--data_path_and_name_and_type", action="append",
                   help="e.g. dump/raw/test/wav.scp,speech,sound (or --sets_file)")
    p.add_argument("--key_file", default=None, help="decode only these utterances (a split of wav.scp)")
    p.add_argument("--output_dir", help="(or --sets_file)")
    p.add_argument("--sets_file", default=None,
                   help="decode several sets: lines '<wav.scp> <key_file or -> <output_dir> [<prior utt2lang>]'")
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--ngpu", type=int, default=0)
    p.add_argument("--num_workers", type=int, default=1)
    p.add_argument("--decoding_method", default="ctc_greedy", choices=["ctc_greedy", "ctc_prefix_beam"])
    p.add_argument("--beam_size", type=int, default=8)
    p.add_argument("--nbest", type=int, default=1, help="ctc_prefix_beam: hypotheses written to <output_dir>/nbest")
    p.add_argument("--ngram_dir", default=None, help="word n-gram LMs of local/train_ngram.py (run.sh stage 4)")
    p.add_argument("--lm_mode", default="none",
                   help="ctc_prefix_beam: which LM decodes each utterance: none | routed (the router's language) | "
                        "mixed (the languages' LMs mixed by the router's posteriors) | oracle (the reference "
                        "language from --prior_utt2lang / a sets file's 4th column) | pooled | a language code")
    p.add_argument("--lm_weight", type=float, default=0.5, help="LM weight (alpha)")
    p.add_argument("--word_score", type=float, default=1.0, help="word insertion bonus (beta)")
    p.add_argument("--unk_score", type=float, default=-10.0, help="log10 penalty per out-of-vocabulary word")
    p.add_argument("--allowed_langs", default=None,
                   help="comma-separated language prior for every utterance, e.g. hi,mr; or 'oracle' (each "
                        "utterance's reference languages from --prior_utt2lang) or 'oracle_wrong' (a language "
                        "that is not the utterance's: the next one in the model's language list), to measure "
                        "a correct and a wrong prior")
    p.add_argument("--prior_utt2lang", default=None, help="reference utt2lang for --allowed_langs oracle[_wrong]")
    p.add_argument("--prior_mode", default="hard", choices=["hard", "soft"])
    p.add_argument("--soft_floor", type=float, default=0.1)
    p.add_argument("--config", default=None, help="yaml with any of these options (command line wins)")
    p.add_argument("--log_level", default="INFO")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.config:
        import yaml

        with open(args.config, encoding="utf-8") as f:
            conf = yaml.safe_load(f) or {}
        unknown = sorted(set(conf) - set(vars(args)))
        if unknown:
            parser.error(f"{args.config}: unknown options {unknown}")
        parser.set_defaults(**conf)
        args = parser.parse_args(argv)
    tags = [x for x in (args.model_tag, args.model_file) if x]
    if len(tags) > 1 or (tags and (args.asr_train_config or args.asr_model_file)):
        parser.error("give one of --model_tag, --model_file, or --asr_train_config with --asr_model_file")
    if not tags and not (args.asr_train_config and args.asr_model_file):
        parser.error("give --asr_train_config and --asr_model_file, or --model_tag / --model_file")
    if args.sets_file is None and (not args.data_path_and_name_and_type or not args.output_dir):
        parser.error("give --data_path_and_name_and_type and --output_dir, or --sets_file")
    if args.sets_file is not None and (args.data_path_and_name_and_type or args.output_dir or args.key_file):
        parser.error("--sets_file names the data, keys and output of each set: drop --data_path_and_name_and_type, "
                     "--key_file and --output_dir")
    return args


def decode_sets(args) -> list:
    """(data_path_and_name_and_type list, key_file, output_dir, prior utt2lang) per set."""
    if args.sets_file is None:
        return [(args.data_path_and_name_and_type, args.key_file, args.output_dir, args.prior_utt2lang)]
    sets = []
    with open(args.sets_file, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) not in (3, 4):
                raise SystemExit(f"{args.sets_file}:{n}: expected '<wav.scp> <key_file or -> <output_dir> "
                                 f"[<utt2lang>]', got {line.strip()!r}")
            keys = None if fields[1] == "-" else fields[1]
            prior = fields[3] if len(fields) == 4 else args.prior_utt2lang
            sets.append(([f"{fields[0]},speech,sound"], keys, fields[2], prior))
    return sets


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    # Heavy imports after argument parsing: `--help` stays instant.
    import espnet_plugins  # noqa: F401

    from espnet_plugins.inference.speech2text import Speech2Text

    device = "cuda" if args.ngpu > 0 else "cpu"
    oracle = args.allowed_langs in ("oracle", "oracle_wrong")
    sets = decode_sets(args)
    if oracle and (any(prior is None for *_, prior in sets) or args.batch_size != 1):
        raise SystemExit("--allowed_langs oracle[_wrong] needs --prior_utt2lang (or a sets file's 4th column) "
                         "and --batch_size 1")
    lm_oracle = args.lm_mode == "oracle"
    if lm_oracle and any(prior is None for *_, prior in sets):
        raise SystemExit("--lm_mode oracle needs --prior_utt2lang (or a sets file's 4th column)")
    try:
        tag = args.model_tag or args.model_file
        load = (functools.partial(Speech2Text.from_pretrained, tag) if tag
                else functools.partial(Speech2Text, args.asr_train_config, args.asr_model_file))
        s2t = load(
            device=device, decoding=args.decoding_method,
            beam_size=args.beam_size, prior_mode=args.prior_mode, soft_floor=args.soft_floor,
            allowed_langs=args.allowed_langs.split(",") if args.allowed_langs and not oracle else None,
            ngram_dir=args.ngram_dir, lm_mode=args.lm_mode, nbest=args.nbest, lm_weight=args.lm_weight,
            word_score=args.word_score, unk_score=args.unk_score,
        )
        if oracle:  # its priors are set per utterance: fail now, not at the first batch
            s2t.check_language_prior_applies()
    except (ValueError, FileNotFoundError) as e:  # a bad option or model tag: no traceback
        raise SystemExit(f"asr_inference: {e}")
    for data, key_file, output_dir, prior_utt2lang in sets:
        utt_prior = (_utterance_priors(prior_utt2lang, s2t.langs, args.allowed_langs == "oracle_wrong")
                     if oracle else {})
        utt_lm = _utterance_priors(prior_utt2lang, s2t.langs, False) if lm_oracle else {}
        _decode(args, s2t, data, key_file, Path(output_dir), utt_prior, device, utt_lm)


def _decode(args, s2t, data, key_file, out: Path, utt_prior: dict, device: str, utt_lm: dict = None) -> None:
    import torch

    from espnet_plugins.tasks.asr import MoEASRTask
    from espnet_plugins.utils.io import atomic_write_text

    loader = MoEASRTask.build_streaming_iterator(
        [tuple(x.split(",")) for x in data],
        dtype="float32", batch_size=args.batch_size, key_file=key_file, num_workers=args.num_workers,
        preprocess_fn=None, collate_fn=MoEASRTask.build_collate_fn(argparse.Namespace(), False), inference=True,
    )
    out.mkdir(parents=True, exist_ok=True)
    lines = {"text": [], "token": [], "lang": [], "route_frac": [], "smear_gate": [], "nbest": [], "words": [],
             "lm": []}
    audio_sec = decode_sec = 0.0
    sample_rate = _sample_rates(data, args.asr_train_config)
    for keys, batch in loader:
        if utt_prior:
            s2t.set_language_prior(utt_prior[keys[0]], args.prior_mode, args.soft_floor)
        t0 = time.perf_counter()
        lm_langs = {"lm_langs": [utt_lm[k] for k in keys]} if utt_lm else {}  # --lm_mode oracle
        results = s2t.batch(batch["speech"], batch["speech_lengths"], **lm_langs)
        decode_sec += time.perf_counter() - t0
        audio_sec += sum(n / sample_rate(k) for k, n in zip(keys, batch["speech_lengths"].tolist()))
        for key, r in zip(keys, results):
            lines["text"].append(f"{key} {r.text}".rstrip())
            lines["token"].append(f"{key} {' '.join(r.tokens)}".rstrip())
            if r.lang is not None:
                lines["lang"].append(f"{key} {r.lang}")
            for name in ("route_frac", "smear_gate"):
                values = getattr(r, name)
                if values is not None:
                    lines[name].append(f"{key} " + " ".join(f"{v:.4f}" for v in values))
            if getattr(r, "nbest", None):  # ctc_prefix_beam: n-best, words (CTM: start, duration), LM used
                lines["nbest"] += [f"{key} {n} {score:.3f} {text}".rstrip() for n, (text, score) in enumerate(r.nbest, 1)]
                lines["words"] += [f"{key} 1 {s:.2f} {e - s:.2f} {w}" for w, s, e in r.words]
                lines["lm"].append(f"{key} {r.lm or 'none'}")
    for name, rows in lines.items():
        if rows:  # atomic: a killed job never leaves a half file behind
            # nbest / words: several lines per utterance, kept in rank / time order
            order = sorted(rows, key=lambda r: r.split(" ", 1)[0]) if name in ("nbest", "words") else sorted(rows)
            atomic_write_text(out / name, "".join(r + "\n" for r in order))
    rtf = {"audio_seconds": audio_sec, "decode_seconds": decode_sec,
           "rtf": decode_sec / audio_sec if audio_sec else None,
           "threads": torch.get_num_threads(), "device": device, "batch_size": args.batch_size,
           "decoding_method": args.decoding_method, "lm_mode": args.lm_mode}
    (out / "rtf.json").write_text(json.dumps(rtf, indent=1))
    logging.info(f"decoded {len(lines['text'])} utterances into {out}, RTF {rtf['rtf']}")


def _sample_rates(data, asr_train_config: str):
    """``key -> Hz`` of the decoded audio, for the RTF's audio seconds: each file's own
    rate for ``sound`` data, else the model's ``frontend_conf.fs`` (ESPnet's default 16k)."""
    import functools

    import humanfriendly
    import soundfile
    import yaml

    path, _, kind = next(x.split(",") for x in data if x.split(",")[1] == "speech")
    if kind == "sound":
        with open(path, encoding="utf-8") as f:
            files = dict(line.rstrip("\n").split(maxsplit=1) for line in f if line.strip())
        return functools.lru_cache(maxsize=None)(lambda key: soundfile.info(files[key]).samplerate)
    with open(asr_train_config, encoding="utf-8") as f:
        fs = ((yaml.safe_load(f) or {}).get("frontend_conf") or {}).get("fs", 16000)
    fs = humanfriendly.parse_size(fs) if isinstance(fs, str) else fs
    return lambda key: fs


def _utterance_priors(utt2lang: str, langs, wrong: bool) -> dict:
    """Per-utterance prior: its reference languages, or (wrong) the next language not among them."""
    priors = {}
    with open(utt2lang, encoding="utf-8") as f:
        for line in f:
            utt, *ref = line.split()
            if wrong:
                # the languages after the utterance's first one, in list order, wrapping around
                start = langs.index(ref[0])
                rotated = langs[start + 1:] + langs[:start + 1]
                ref = [next(lang for lang in rotated if lang not in ref)]
            priors[utt] = ref
    return priors


if __name__ == "__main__":
    main(sys.argv[1:])
