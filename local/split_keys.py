#!/usr/bin/env python3
"""Split the keys of a scp file into N key files (``--out dir/keys.JOB.scp``), in order."""
import argparse
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scp", required=True)
    p.add_argument("--nj", type=int, required=True)
    p.add_argument("--out", required=True, help="path containing JOB, replaced by 1..N")
    a = p.parse_args()
    keys = [line.split(maxsplit=1)[0] for line in open(a.scp, encoding="utf-8") if line.strip()]
    if len(keys) < a.nj:
        raise SystemExit(f"{a.scp} has {len(keys)} utterances, fewer than --nj {a.nj}: lower --nj")
    for j in range(a.nj):
        part = keys[len(keys) * j // a.nj : len(keys) * (j + 1) // a.nj]
        path = Path(a.out.replace("JOB", str(j + 1)))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k} {k}\n" for k in part), encoding="utf-8")


if __name__ == "__main__":
    main()
