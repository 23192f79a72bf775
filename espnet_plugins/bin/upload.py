"""Upload a packed model (run.sh stage 11) to the Hugging Face hub with a model card (run.sh stage 13).

    HF_HUB_OFFLINE=0 python -m espnet_plugins.bin.upload --packed exp/asr/packed.zip \\
        --repo_id me/indic-asr --results_md exp/RESULTS.md --results_tag "dense_conformer / ctc_greedy" \\
        --card_template conf/model_card.md --outdir exp/asr/hf_upload

As ESPnet's asr.sh upload stage: the zip is unpacked into ``--outdir`` with the card as
``README.md``, then ``HfApi.create_repo`` + ``upload_folder``. The token is never an
argument: ``huggingface_hub`` takes it from ``HF_TOKEN`` or from its credential store
(``hf auth login``), and it is never printed or written. ``HF_ENDPOINT`` selects another
hub. ``--dry_run`` writes ``--outdir`` and uploads nothing.
"""
import argparse
import logging
import shutil
import sys
from pathlib import Path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--packed", required=True, help="the packed zip (run.sh stage 11)")
    p.add_argument("--repo_id", required=True, help="owner/name on the hub")
    p.add_argument("--results_md", default=None, help="RESULTS.md holding this model's section")
    p.add_argument("--results_tag", default="", help="that section's tag, e.g. 'dense_conformer / ctc_greedy'")
    p.add_argument("--card_template", required=True, help="string.Template markdown (the recipe's conf/model_card.md)")
    p.add_argument("--license", default="other", help="the model card's licence field")
    p.add_argument("--outdir", required=True, help="the folder to upload (rewritten)")
    p.add_argument("--extra", action="append", default=[], help="another file or folder to upload beside it (ONNX)")
    p.add_argument("--private", action="store_true")
    p.add_argument("--commit_message", default="Upload packed model (espnet_plugins)")
    p.add_argument("--dry_run", action="store_true", help="write --outdir only")
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    from espnet_plugins.deploy.model_card import render_card
    from espnet_plugins.deploy.pack import model_files

    outdir = Path(args.outdir)
    if outdir.exists():
        shutil.rmtree(outdir)
    import zipfile

    with zipfile.ZipFile(args.packed) as z:
        z.extractall(outdir)
    config = model_files(outdir)["asr_train_config"]
    template = Path(args.card_template).read_text(encoding="utf-8")
    try:
        card = render_card(template, str(config), args.repo_id, args.results_md, args.results_tag, args.license)
    except (KeyError, ValueError) as e:
        raise SystemExit(f"upload: {args.card_template}: bad placeholder {e} (see espnet_plugins.deploy.model_card)")
    (outdir / "README.md").write_text(card, encoding="utf-8")
    for extra in map(Path, args.extra):
        if extra.is_dir():
            shutil.copytree(extra, outdir / extra.name)
        elif extra.is_file():
            shutil.copy(extra, outdir / extra.name)
        else:
            raise SystemExit(f"upload: --extra {extra} does not exist")
    files = sorted(str(p.relative_to(outdir)) for p in outdir.rglob("*") if p.is_file())
    logging.info(f"{outdir}: {len(files)} files: {' '.join(files)}")
    if args.dry_run:
        logging.info("--dry_run: nothing uploaded")
        return

    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if get_token() is None:
        raise SystemExit("upload: no hub token: export HF_TOKEN=... or run `hf auth login` (never pass it as an option)")
    api = HfApi()
    try:
        url = api.create_repo(args.repo_id, private=args.private, exist_ok=True)
        commit = api.upload_folder(repo_id=args.repo_id, folder_path=str(outdir), commit_message=args.commit_message)
    except OfflineModeIsEnabled:
        raise SystemExit("upload: HF_HUB_OFFLINE=1 (tools/activate.sh's default): rerun with HF_HUB_OFFLINE=0")
    except HfHubHTTPError as e:
        raise SystemExit(f"upload: the hub refused ({e.response.status_code}): {str(e).splitlines()[0]}")
    logging.info(f"uploaded {len(files)} files to {url} ({commit})")


if __name__ == "__main__":
    main(sys.argv[1:])
