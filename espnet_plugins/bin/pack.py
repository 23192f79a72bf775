"""Pack a trained model into one zip that loads anywhere (run.sh stage 11).

    python -m espnet_plugins.bin.pack --asr_train_config exp/asr/config.yaml \\
        --asr_model_file exp/asr/valid.loss.ave.pth --option exp/RESULTS.md --outpath exp/asr/packed.zip

Unlike ``espnet2.bin.pack`` (which stores the files it is given, under their paths on
this machine), every file ``config.yaml`` needs (feature statistics, token list, BPE
model, language list, a frozen base model's config) goes in, and the config is
rewritten to their names inside the zip. Load it with
``Speech2Text.from_pretrained("packed.zip")`` or ``asr_inference --model_tag packed.zip``;
``espnet2.main_funcs.pack_funcs.unpack`` reads it too.
"""
import argparse
import logging
import sys


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--asr_train_config", required=True)
    p.add_argument("--asr_model_file", required=True)
    p.add_argument("--outpath", required=True, help="the .zip to write")
    p.add_argument("--option", action="append", default=[], help="an extra file (RESULTS.md ...), repeatable")
    p.add_argument("--base_dir", default=".", help="where relative paths in the config start (training's cwd)")
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    if not args.outpath.endswith(".zip"):
        raise SystemExit(f"pack: --outpath must end in .zip, got {args.outpath}")
    from espnet_plugins.deploy.pack import pack_model

    try:
        pack_model(args.asr_train_config, args.asr_model_file, args.outpath, args.option, args.base_dir)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"pack: {e}")


if __name__ == "__main__":
    main(sys.argv[1:])
