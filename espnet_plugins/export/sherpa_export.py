"""Export a trained CTC model for sherpa-onnx's ``OfflineRecognizer`` (``model.onnx`` + ``tokens.txt``).

    recognizer = sherpa_onnx.OfflineRecognizer.from_omnilingual_asr_ctc(
        model="exp/asr/sherpa_onnx/model.onnx", tokens="exp/asr/sherpa_onnx/tokens.txt")
    # or: sherpa-onnx-offline --omnilingual-asr-ctc=model.onnx --tokens=tokens.txt file.wav

The graph is :class:`~espnet_plugins.export.sherpa_graph.SherpaCTCGraph` (why that model
type: see there): raw 16 kHz samples in, the model's own fbank + global MVN, encoder with
top-1 expert dispatch (pruned to ``allowed_langs`` in hard mode) and CTC log-softmax.
``tokens.txt`` is sherpa-onnx's ``<symbol> <id>`` list with ESPnet's ``<space>`` written as
``▁`` (sherpa-onnx turns it into a space). A report (``model.json``) holds ONNX Runtime
vs PyTorch on a check waveform.
"""
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from espnet_plugins.export.onnx_export import (
    CHECK_TOLERANCE, SAMPLE_RATE, _example_batch, _token_type, add_metadata, build_ctc_graph, reference_log_probs)
from espnet_plugins.export.sherpa_graph import SherpaCTCGraph
from espnet_plugins.utils.io import atomic_write_text


def sherpa_normalize(wave: np.ndarray) -> np.ndarray:
    """What sherpa-onnx does to a waveform before an omnilingual CTC model sees it."""
    mean = wave.mean()
    var = max(float((wave * wave).mean() - mean * mean), 0.0)
    return ((wave - mean) / np.sqrt(var + 1e-5)).astype(np.float32)


def sherpa_tokens(token_list: Sequence[str]) -> str:
    """sherpa-onnx's tokens.txt: ``<symbol> <id>``, ``<space>`` as ``▁``."""
    lines = []
    for i, token in enumerate(token_list):
        token = "\u2581" if token == "<space>" else token
        if not token or any(c.isspace() for c in token):
            raise ValueError(f"token {i} ({token!r}) is empty or has white space: sherpa-onnx cannot read it")
        lines.append(f"{token} {i}\n")
    return "".join(lines)


def export_sherpa_onnx(
    asr_train_config: str,
    asr_model_file: str,
    outdir: str,
    allowed_langs: Optional[Sequence[str]] = None,
    prior_mode: str = "hard",
    soft_floor: float = 0.1,
    peak_dbfs: Optional[float] = -1.0,
    opset: int = 17,
) -> Dict:
    """Write ``outdir/model.onnx``, ``outdir/tokens.txt`` and ``outdir/model.json``; return the report."""
    import onnxruntime as ort

    from espnet_plugins.inference.speech2text import Speech2Text

    if prior_mode not in ("hard", "soft"):
        raise ValueError(f"prior_mode must be 'hard' or 'soft', got {prior_mode!r}")
    allowed_langs = list(allowed_langs) if allowed_langs else None
    s2t = Speech2Text(asr_train_config, asr_model_file, allowed_langs=allowed_langs,
                      prior_mode=prior_mode, soft_floor=soft_floor)
    graph = SherpaCTCGraph(build_ctc_graph(s2t, allowed_langs, prior_mode), peak_dbfs).eval()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    output = outdir / "model.onnx"
    tmp = outdir / ".model.onnx.tmp"
    example, _ = _example_batch([SAMPLE_RATE], seed=0)
    with warnings.catch_warnings():  # as export_onnx: trace-time shape checks, deprecated exporter
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        torch.onnx.export(graph, (example,), str(tmp), dynamo=False, opset_version=opset,
                          input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "batch", 1: "samples"}, "logits": {0: "batch", 1: "frames"}})
    langs = getattr(graph.graph.encoder, "langs", None) if graph.graph.has_router else None
    meta = {
        "model_type": "espnet_plugins_ctc",
        "sherpa_onnx_model_type": "omnilingual_asr_ctc",
        "sample_rate": str(SAMPLE_RATE),
        "token_type": _token_type(asr_train_config),
        "peak_dbfs": "none" if peak_dbfs is None else str(peak_dbfs),
        "langs": json.dumps(langs if langs is not None else s2t.langs),
        "allowed_langs": json.dumps(allowed_langs),
        "prior_mode": prior_mode if allowed_langs else "none",
    }
    add_metadata(tmp, meta)
    check = _check(str(tmp), s2t.model, ort, peak_dbfs)
    if check["max_abs_diff"] > CHECK_TOLERANCE:
        os.unlink(tmp)
        raise RuntimeError(f"ONNX Runtime and PyTorch disagree by {check['max_abs_diff']:.3g} > {CHECK_TOLERANCE} "
                           "on the check waveform; nothing was written. Report the config.")
    os.replace(tmp, output)
    atomic_write_text(outdir / "tokens.txt", sherpa_tokens(s2t.model.token_list))
    report = {
        "onnx": str(output), "bytes": output.stat().st_size,
        "parameters": sum(p.numel() for p in graph.parameters()),
        "source_parameters": sum(p.numel() for p in s2t.model.parameters()),
        "asr_train_config": str(asr_train_config), "asr_model_file": str(asr_model_file), "opset": opset,
        **{k: json.loads(v) if k.endswith("langs") else v for k, v in meta.items()}, "check": check,
    }
    atomic_write_text(outdir / "model.json", json.dumps(report, indent=1) + "\n")
    logging.info(f"wrote {output} for sherpa-onnx ({report['bytes'] / 2**20:.2f} MiB, languages {meta['langs']}); "
                 f"ONNX Runtime vs PyTorch max |diff| {check['max_abs_diff']:.2g}")
    return report


def _check(path: str, model, ort, peak_dbfs) -> Dict:
    """ORT on sherpa-onnx's normalised check waveform vs PyTorch on the same audio at the
    restored level (what the graph should compute)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    wave = _example_batch([13 * SAMPLE_RATE // 10], seed=1)[0][0].numpy()
    normalized = sherpa_normalize(wave)
    restored = normalized
    if peak_dbfs is not None:
        restored = normalized * (10 ** (peak_dbfs / 20) / max(float(np.abs(normalized).max()), 1e-8))
    out = session.run(None, {"x": normalized[None]})[0][0]
    ref, ref_len = reference_log_probs(model, torch.from_numpy(restored.astype(np.float32))[None],
                                       torch.tensor([len(restored)]))
    ref = ref[0, : int(ref_len[0])].numpy()
    if out.shape != ref.shape:
        raise RuntimeError(f"output shapes differ: ONNX {out.shape}, PyTorch {ref.shape}")
    return {"samples": len(wave), "max_abs_diff": float(np.abs(out - ref).max()),
            "hypotheses_equal": bool((out.argmax(-1) == ref.argmax(-1)).all())}
