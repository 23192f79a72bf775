#!/usr/bin/env python3
"""Merge per-job decode outputs (``text``, ``token``, ``lang``, ``nbest``, ``words``, ``rtf.json`` ...) into one dir."""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from espnet_plugins.utils.io import atomic_write_text  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("parts", nargs="+", type=Path)
    a = p.parse_args()
    for name in ("nbest", "words"):  # several lines per utterance (rank / time order): kept in order
        rows = [line for part in a.parts if (part / name).exists()
                for line in (part / name).read_text(encoding="utf-8").splitlines()]
        if rows:
            atomic_write_text(a.out / name, "".join(r + "\n" for r in sorted(rows, key=lambda r: r.split(" ", 1)[0].encode())))
    for name in ("token", "lang", "route_frac", "smear_gate", "lm", "text"):  # text last: its presence marks a finished merge
        rows = {}
        for part in a.parts:
            f = part / name
            if f.exists():
                for line in f.read_text(encoding="utf-8").splitlines():
                    key, _, value = line.partition(" ")
                    rows[key] = value
        if name == "text" or rows:
            # empty hypotheses are legal: write "key" alone, as Kaldi does
            atomic_write_text(a.out / name, "".join(f"{k} {v}".rstrip() + "\n" for k, v in sorted(rows.items(), key=lambda kv: kv[0].encode())))
    stats = [json.loads((part / "rtf.json").read_text()) for part in a.parts if (part / "rtf.json").exists()]
    if stats:
        audio = sum(s["audio_seconds"] for s in stats)
        decode = sum(s["decode_seconds"] for s in stats)
        merged = dict(stats[0], audio_seconds=audio, decode_seconds=decode, rtf=decode / audio if audio else None, jobs=len(stats))
        (a.out / "rtf.json").write_text(json.dumps(merged, indent=1))


if __name__ == "__main__":
    main()
