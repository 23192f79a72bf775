"""Export a trained CTC model (waveform -> CTC log-probabilities) to ONNX.

:func:`export_onnx` loads ``config.yaml`` + checkpoint as :class:`Speech2Text` does,
applies the language prior, traces :class:`CTCGraph` with dynamic batch and time
axes, checks ONNX Runtime against PyTorch on a padded batch of another shape, and
writes beside the ``.onnx`` file the token list (``tokens.txt``) and a JSON report
(``<name>.json``: sizes, languages, the check's numbers). The graph's metadata holds
what :mod:`espnet_plugins.inference.onnx_decode` needs (languages, token type,
sample rate, shortest decodable input).

Language prior: ``prior_mode="hard"`` prunes physically (the other languages'
experts and router outputs are sliced out of the stacked tensors, see
:func:`prune_language_experts`), so the file carries only the allowed languages;
``"soft"`` keeps every expert and bakes ``log(soft_floor)`` for the other languages
into the router logits.
"""
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from espnet_plugins.export.ctc_graph import CTCGraph
from espnet_plugins.export.pruning import prune_language_experts
from espnet_plugins.inference.ctc_decoding import ctc_greedy
from espnet_plugins.utils.io import atomic_write_text

SAMPLE_RATE = 16000
# ONNX Runtime vs PyTorch, max |log-prob difference| over valid frames, above which
# the export is refused (float32 kernels differ by ~1e-6 on these models).
CHECK_TOLERANCE = 1e-3


def reference_log_probs(model, speech: torch.Tensor, lengths: torch.Tensor):
    """PyTorch's CTC log-probabilities [B, T', V] and lengths for a padded batch."""
    with torch.no_grad():
        enc, enc_lengths = model.encode(speech, lengths)
        if isinstance(enc, tuple):
            enc = enc[0]
        return model.ctc.log_softmax(enc), enc_lengths


def _example_batch(lengths: Sequence[int], seed: int):
    g = torch.Generator().manual_seed(seed)
    speech = 0.05 * torch.randn(len(lengths), max(lengths), generator=g)
    lengths = torch.tensor(list(lengths))
    return speech * (torch.arange(speech.size(1)) < lengths[:, None]), lengths


def build_ctc_graph(s2t, allowed_langs: Optional[Sequence[str]], prior_mode: str) -> CTCGraph:
    """The export graph of ``s2t.model``, pruned to ``allowed_langs`` in hard mode."""
    graph = CTCGraph(s2t.model)
    encoder = graph.encoder
    if allowed_langs and prior_mode == "hard" and hasattr(encoder, "router"):
        encoder.set_language_prior(None)
        prune_language_experts(encoder, [s2t.langs.index(x) for x in allowed_langs])
    return graph


def export_onnx(
    asr_train_config: str,
    asr_model_file: str,
    output: str,
    allowed_langs: Optional[Sequence[str]] = None,
    prior_mode: str = "hard",
    soft_floor: float = 0.1,
    opset: int = 17,
) -> Dict:
    """Write ``output`` (.onnx), ``tokens.txt`` and ``<name>.json`` beside it.

    Graph inputs: ``speech`` [B, S] float32 (16 kHz, zero-padded) and
    ``speech_lengths`` [B] int64. Outputs: ``log_probs`` [B, T', V],
    ``log_probs_lengths`` [B] and, with a language router, ``lid_logits`` [B, T', L].

    Returns the report written to ``<name>.json``.
    """
    import onnxruntime as ort

    from espnet_plugins.inference.speech2text import Speech2Text

    if prior_mode not in ("hard", "soft"):
        raise ValueError(f"prior_mode must be 'hard' or 'soft', got {prior_mode!r}")
    allowed_langs = list(allowed_langs) if allowed_langs else None
    s2t = Speech2Text(
        asr_train_config, asr_model_file, allowed_langs=allowed_langs,
        prior_mode=prior_mode, soft_floor=soft_floor,
    )
    graph = build_ctc_graph(s2t, allowed_langs, prior_mode)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    example = _example_batch([SAMPLE_RATE, 3 * SAMPLE_RATE // 4], seed=0)
    names = graph.output_names()
    dynamic_axes = {"speech": {0: "batch", 1: "samples"}, "speech_lengths": {0: "batch"}}
    for name in names:
        dynamic_axes[name] = {0: "batch"} if name.endswith("lengths") else {0: "batch", 1: "frames"}
    with warnings.catch_warnings():
        # The TorchScript exporter (no onnxscript needed) is deprecated; and its
        # tracer warns about shape checks that run once at trace time (too-short
        # input checks), which do not change the graph.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # Reversed aranges (positional encoding) are computed at run time, as intended.
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        torch.onnx.export(
            graph, example, str(tmp), dynamo=False, opset_version=opset,
            input_names=["speech", "speech_lengths"], output_names=list(names),
            dynamic_axes=dynamic_axes,
        )
    langs = getattr(graph.encoder, "langs", None) if graph.has_router else None
    meta = {
        "sample_rate": str(SAMPLE_RATE),
        "min_samples": str(s2t.min_samples),
        "token_type": _token_type(asr_train_config),
        "blank_id": str(getattr(s2t.model, "blank_id", 0)),
        "langs": json.dumps(langs if langs is not None else s2t.langs),
        "router_langs": json.dumps(langs),
        "allowed_langs": json.dumps(allowed_langs),
        "prior_mode": prior_mode if allowed_langs else "none",
    }
    add_metadata(tmp, meta)

    check = _check(str(tmp), s2t.model, ort)
    if check["max_abs_diff"] > CHECK_TOLERANCE:
        os.unlink(tmp)
        raise RuntimeError(
            f"ONNX Runtime and PyTorch disagree by {check['max_abs_diff']:.3g} > "
            f"{CHECK_TOLERANCE} on the check batch; nothing was written. Report the config."
        )
    os.replace(tmp, output)
    atomic_write_text(output.parent / "tokens.txt", "".join(t + "\n" for t in s2t.model.token_list))
    report = {
        "onnx": str(output),
        "bytes": output.stat().st_size,
        "parameters": sum(p.numel() for p in graph.parameters()),
        "source_parameters": sum(p.numel() for p in s2t.model.parameters()),
        "asr_train_config": str(asr_train_config),
        "asr_model_file": str(asr_model_file),
        "opset": opset,
        **{k: json.loads(v) if k.endswith("langs") else v for k, v in meta.items()},
        "check": check,
    }
    atomic_write_text(output.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    logging.info(
        f"wrote {output} ({report['bytes'] / 2**20:.2f} MiB, {report['parameters'] / 1e6:.2f} M "
        f"parameters; languages {meta['langs']}); ONNX Runtime vs PyTorch max |diff| "
        f"{check['max_abs_diff']:.2g}, hypotheses equal: {check['hypotheses_equal']}"
    )
    return report


def _check(path: str, model, ort) -> Dict:
    """ORT vs PyTorch (with the same prior) on a padded batch unlike the trace's."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    speech, lengths = _example_batch([13 * SAMPLE_RATE // 10, 6 * SAMPLE_RATE // 10, SAMPLE_RATE], seed=1)
    log_probs, ref_lengths = reference_log_probs(model, speech, lengths)
    out = session.run(None, {"speech": speech.numpy(), "speech_lengths": lengths.numpy()})
    if out[1].tolist() != ref_lengths.tolist():
        raise RuntimeError(f"output lengths differ: ONNX {out[1].tolist()}, PyTorch {ref_lengths.tolist()}")
    diff = max(
        float(np.abs(out[0][i, :n] - log_probs[i, :n].numpy()).max())
        for i, n in enumerate(ref_lengths.tolist())
    )
    same = ctc_greedy(torch.from_numpy(out[0]), ref_lengths) == ctc_greedy(log_probs, ref_lengths)
    return {"batch_lengths": lengths.tolist(), "max_abs_diff": diff, "hypotheses_equal": same}


def add_metadata(path, meta: Dict[str, str]) -> None:
    """Store ``meta`` as the ONNX file's metadata_props (what runtimes read), checked."""
    import onnx

    proto = onnx.load(str(path))
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _token_type(config: str) -> str:
    import yaml

    with open(config, encoding="utf-8") as f:
        return str((yaml.safe_load(f) or {}).get("token_type", "char"))
