"""Decode the first utterances of a wav.scp with one or more models, for tests/test_deploy.py.

    python tests/_deploy_decode.py <wav.scp> <n> <out_prefix> <model> [<model> ...]

<model>: a ``Speech2Text.from_pretrained`` tag (zip, directory, hub repo id), or
``espnet_unpack:<zip>`` (ESPnet's own ``unpack`` into ./unpacked, then
``Speech2Text(config, model)``). Writes ``<out_prefix>.<i>.json`` ({utt: text}) and
``<out_prefix>.<i>.npz`` (the CTC log-probabilities per utterance) for model i. Run as a
script in a new process (the tests run it from an empty directory), or call :func:`decode`.
"""
import json
import sys

import numpy as np
import soundfile as sf
import torch


def decode(spec: str, scp: str, n: int):
    from espnet_plugins.export.onnx_export import reference_log_probs
    from espnet_plugins.inference.speech2text import Speech2Text

    if spec.startswith("espnet_unpack:"):
        from espnet2.main_funcs.pack_funcs import unpack

        files = unpack(spec.split(":", 1)[1], "unpacked")
        s2t = Speech2Text(files["asr_train_config"], files["asr_model_file"])
    else:
        s2t = Speech2Text.from_pretrained(spec)
    texts, logps = {}, {}
    with open(scp, encoding="utf-8") as f:
        lines = f.read().splitlines()[:n]
    for line in lines:
        utt, path = line.split(maxsplit=1)
        wave, _ = sf.read(path, dtype="float32")
        texts[utt] = s2t(wave).text
        lp, lengths = reference_log_probs(s2t.model, torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
        logps[utt] = lp[0, : int(lengths[0])].numpy()
    return texts, logps


if __name__ == "__main__":
    scp, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(1)
    for i, spec in enumerate(sys.argv[4:]):
        texts, logps = decode(spec, scp, n)
        with open(f"{out}.{i}.json", "w", encoding="utf-8") as f:
            json.dump(texts, f, ensure_ascii=False)
        np.savez(f"{out}.{i}.npz", **logps)
