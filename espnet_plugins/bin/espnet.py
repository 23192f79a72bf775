"""Run a stock ESPnet CLI module with this package's registrations and offline setup.

    python -m espnet_plugins.bin.espnet espnet2.bin.tokenize_text --help

Stock tools that build models (``espnet2.bin.pack``, ``asr_inference``) then resolve
names such as ``encoder: blr_moe``, and nothing tries the network on import.
"""
import runpy
import sys

import espnet_plugins  # noqa: F401  (offline + quiet import hook)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: python -m espnet_plugins.bin.espnet <espnet module> [args...]")
    module = sys.argv[1]
    if module.startswith("espnet2.bin.asr") or module == "espnet2.bin.pack":
        import espnet_plugins.tasks.asr  # noqa: F401  (registers our classes)
    sys.argv = [module] + sys.argv[2:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
