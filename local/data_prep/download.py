#!/usr/bin/env python3
"""Download (and extract) a public corpus for the real-corpus recipe (its stage 0).

    local/data_prep/download.py kathbath --dir downloads/kathbath --subsets train,valid,test_known
    local/data_prep/download.py fleurs --dir downloads/fleurs --langs hi_in,mr_in --subsets train,dev,test
    local/data_prep/download.py indicvoices --dir downloads/indicvoices --langs hindi --subsets valid

Resumes interrupted downloads, verifies sizes and published checksums, skips what is
complete, extracts archives safely.  Kathbath's archives come from AI4Bharat's object store
(the URLs ESPnet's egs2/kathbath uses; each holds all 12 languages: the train audio alone
is very large); FLEURS and IndicVoices from the Hugging Face hub (``HF_ENDPOINT`` selects
another endpoint).  IndicVoices is gated: accept its terms on the hub, then log in with
``hf auth login`` or export ``HF_TOKEN``; a token is never given on the command line.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

# Running this tool is the explicit request to go online: lift the toolkit's offline flag
# (tools/activate.sh and espnet_plugins set HF_HUB_OFFLINE=1 so that nothing else downloads).
os.environ["HF_HUB_OFFLINE"] = "0"
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from espnet_plugins.data.download import DownloadError, fetch_url, hub_download, safe_extract  # noqa: E402
from espnet_plugins.data.import_corpora import CorpusError  # noqa: E402
from espnet_plugins.data.indic_corpora import (  # noqa: E402
    _KB_BASE, FLEURS_INDIC, FLEURS_REPO, INDICVOICES_LANGS, INDICVOICES_PAGE, INDICVOICES_REPO, KATHBATH_PAGE, _fleurs_config,
    _resolve_langs, fleurs_files, kathbath_archives,
)

log = logging.getLogger("download")


def download_kathbath(target: Path, subsets, base_url: str, keep_archives: bool) -> None:
    for url, name in kathbath_archives(subsets, base_url):
        marker = target / f".{name}.extracted"
        if marker.is_file():
            log.info("%s: already downloaded and extracted, skipping", url)
            continue
        archive = fetch_url(url, target / "archives" / name, page=KATHBATH_PAGE)
        safe_extract(archive, target)
        if not keep_archives:
            archive.unlink()


def download_fleurs(target: Path, langs, subsets) -> None:
    for path in fleurs_files(langs, subsets):
        marker = target / Path(path).parent / f".{Path(path).name}.extracted"
        if path.endswith(".tar.gz") and marker.is_file():
            log.info("%s: already downloaded and extracted, skipping", path)
            continue
        local = hub_download(FLEURS_REPO, path, target)
        log.info("%s: %s", path, local)
        if path.endswith(".tar.gz"):
            safe_extract(local, local.parent)


def download_indicvoices(target: Path, langs, subsets, revision: str) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

    for name, _ in _resolve_langs(langs, INDICVOICES_LANGS, "IndicVoices"):
        try:
            files = [f.path for f in HfApi().list_repo_tree(INDICVOICES_REPO, path_in_repo=name, repo_type="dataset",
                                                            revision=revision)]
        except (GatedRepoError, HfHubHTTPError) as e:
            raise DownloadError(f"cannot list {INDICVOICES_REPO}/{name} on the hub ({type(e).__name__}); the dataset "
                                f"is gated: accept its terms at {INDICVOICES_PAGE}, then `hf auth login` or export "
                                "HF_TOKEN (never on a command line)") from e
        for subset in subsets:
            wanted = sorted(f for f in files if Path(f).name.startswith(f"{subset}-") and f.endswith(".parquet"))
            if not wanted:
                raise DownloadError(f"{INDICVOICES_REPO}: no {name}/{subset}-*.parquet on the hub (files: "
                                    f"{', '.join(files[:5])}...)")
            for f in wanted:
                hub_download(INDICVOICES_REPO, f, target, revision=revision, page=INDICVOICES_PAGE)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", choices=("kathbath", "fleurs", "indicvoices"))
    parser.add_argument("--dir", required=True, help="download dir (the importer's --root)")
    parser.add_argument("--langs", default="", help="languages (FLEURS: configs or codes, default its Indic ones; "
                        "IndicVoices: names or codes; Kathbath's archives hold all languages)")
    parser.add_argument("--subsets", required=True, help="comma-separated subsets, e.g. train,valid,test_known")
    parser.add_argument("--kathbath_url", default=_KB_BASE, help="base URL of the Kathbath archives (a mirror)")
    parser.add_argument("--revision", default="main", help="hub revision (IndicVoices)")
    parser.add_argument("--keep_archives", action="store_true", help="keep Kathbath's tar files after extraction")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # huggingface_hub logs each request at INFO level in some versions; its URLs are enough.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    target = Path(args.dir)
    langs = [x for x in args.langs.split(",") if x]
    subsets = [x for x in args.subsets.split(",") if x]
    try:
        if args.corpus == "kathbath":
            download_kathbath(target, subsets, args.kathbath_url, args.keep_archives)
        elif args.corpus == "fleurs":
            langs = [_fleurs_config(lang) for lang in langs] or list(FLEURS_INDIC)
            download_fleurs(target, langs, subsets)
        else:
            download_indicvoices(target, langs, subsets, args.revision)
    except (DownloadError, CorpusError) as e:
        parser.exit(1, f"error: {e}\n")
    log.info("%s: %s ready in %s", args.corpus, ",".join(subsets), target)


if __name__ == "__main__":
    main()
