#!/usr/bin/env python3
"""Print ``base.yaml`` with the top-level keys of ``override.yaml`` replaced (a config variant)."""
import sys

import yaml


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: merge_yaml.py base.yaml override.yaml > merged.yaml")
    with open(sys.argv[1], encoding="utf-8") as f:
        merged = yaml.safe_load(f) or {}
    with open(sys.argv[2], encoding="utf-8") as f:
        merged.update(yaml.safe_load(f) or {})
    yaml.safe_dump(merged, sys.stdout, sort_keys=False, allow_unicode=True)


if __name__ == "__main__":
    main()
