"""The hub model card (``README.md``) of a packed model, from a ``string.Template`` file.

Placeholders (``$name``): ``repo_id``, ``languages_yaml`` (a YAML list for the
metadata block), ``languages``, ``license``, ``results`` (this model's section of
``RESULTS.md``, as ``local/score.py`` wrote it), ``command`` (the ``run.sh`` command
that section records), ``config`` (the model's architecture keys of ``config.yaml``),
``train_config``, ``date``. The recipe's template (``conf/model_card.md``) adds the
licence of its training data.
"""
import datetime
import re
import string
from pathlib import Path
from typing import Dict, Optional

import yaml

# config.yaml keys that describe the model (not the training run's data paths)
_ARCH_KEYS = ("frontend", "frontend_conf", "specaug", "normalize", "preencoder", "preencoder_conf", "encoder",
              "encoder_conf", "postencoder", "decoder", "model", "model_conf", "ctc_conf", "token_type",
              "bpemodel", "lang_list")


def results_section(results_md: Optional[str], tag: str) -> Optional[str]:
    """The section ``tag`` of a RESULTS.md (between local/score.py's markers), without the markers."""
    if not results_md or not Path(results_md).is_file():
        return None
    text = Path(results_md).read_text(encoding="utf-8")
    begin, end = f"<!-- local/score.py section begin: {tag} -->", f"<!-- local/score.py section end: {tag} -->"
    if begin not in text or end not in text:
        return None
    return text.split(begin, 1)[1].split(end, 1)[0].strip("\n")


def render_card(
    template: str,
    config_path: str,
    repo_id: str,
    results_md: Optional[str],
    results_tag: str,
    license: str = "other",
) -> str:
    """The model card text; raises ``KeyError`` naming an unknown placeholder of ``template``."""
    with open(config_path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    langs = [str(x) for x in config.get("lang_list") or []] if isinstance(config.get("lang_list"), list) else []
    section = results_section(results_md, results_tag)
    command = "(not recorded)"
    if section is None:
        results = (f"No scores: `{results_md}` has no section `{results_tag}` "
                   "(run.sh stages 8-9 write it).")
    else:
        results = re.sub(r"^## .*\n", "", section, count=1).replace("### ", "#### ")
        found = re.search(r"^- command: `(.*)`$", section, re.M)
        command = found.group(1) if found else command
    arch = {k: config[k] for k in _ARCH_KEYS if k in config}
    if isinstance(arch.get("frontend_conf"), dict):
        arch["frontend_conf"] = {k: v for k, v in arch["frontend_conf"].items() if "/" not in str(v)}
    values: Dict[str, str] = {
        "repo_id": repo_id,
        "languages_yaml": "\n".join(f"- {x}" for x in langs) or "[]",
        "languages": ", ".join(langs) or "(not recorded)",
        "license": license,
        "results": results,
        "command": command,
        "config": yaml.safe_dump(arch, allow_unicode=True, sort_keys=False).rstrip("\n"),
        "train_config": str(config.get("config") or "(not recorded)"),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
    }
    return string.Template(template).substitute(values)
