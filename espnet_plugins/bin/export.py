"""Export a trained model to ONNX: 16 kHz waveform + lengths in, CTC log-probs + lengths out.

    python -m espnet_plugins.bin.export --asr_train_config exp/asr/config.yaml \\
        --asr_model_file exp/asr/valid.loss.ave.pth --output exp/asr/onnx/model.onnx
    # Hindi/Marathi deployment: only those languages' experts are in the file
    python -m espnet_plugins.bin.export ... --allowed_langs hi,mr --output exp/asr/onnx/model_hi_mr.onnx

    # sherpa-onnx: a directory with model.onnx + tokens.txt for its OfflineRecognizer
    python -m espnet_plugins.bin.export ... --format sherpa_onnx --output exp/asr/sherpa_onnx

Supported: frontend ``default`` (+ ``global_mvn``), preencoder ``smear_moe`` or none,
encoder ``conformer`` or ``blr_moe`` (LR-MoE / BLR-MoE), a CTC head. Writes the
.onnx, ``tokens.txt`` and a ``.json`` report (file size, parameters, ONNX Runtime vs
PyTorch check) beside it; see :mod:`espnet_plugins.export.onnx_export`. Decode the
result without torch: ``python -m espnet_plugins.inference.onnx_decode``, or here
with ``--decode_wav_scp`` / ``--decode_output``.
"""
import argparse
import json
import logging
import sys


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--asr_train_config", required=True, help="the experiment's config.yaml")
    p.add_argument("--asr_model_file", required=True, help="checkpoint, e.g. valid.loss.ave.pth")
    p.add_argument("--output", required=True, help="the .onnx file to write (--format sherpa_onnx: a directory)")
    p.add_argument("--format", default="onnx", choices=["onnx", "sherpa_onnx"],
                   help="onnx: waveform + lengths -> log-probs (onnx_decode.py reads it); sherpa_onnx: for "
                        "sherpa-onnx's OfflineRecognizer.from_omnilingual_asr_ctc (see export/sherpa_export.py)")
    p.add_argument("--peak_dbfs", type=float, default=-1.0,
                   help="sherpa_onnx: level the graph restores after sherpa-onnx's variance normalisation "
                        "(the corpus' peak_dbfs)")
    p.add_argument("--allowed_langs", default=None,
                   help="comma-separated languages, e.g. hi,mr: hard mode removes the other languages' "
                        "experts and router outputs from the file; soft mode biases the router")
    p.add_argument("--prior_mode", default="hard", choices=["hard", "soft"])
    p.add_argument("--soft_floor", type=float, default=0.1,
                   help="soft mode: log(soft_floor) is added to the other languages' router logits")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--decode_wav_scp", default=None, help="after exporting, decode this wav.scp with ONNX Runtime")
    p.add_argument("--decode_output", default=None, help="Kaldi text file for --decode_wav_scp")
    p.add_argument("--log_level", default="INFO")
    return p


def main(argv=None) -> None:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.format == "onnx" and not args.output.endswith(".onnx"):
        parser.error(f"--output must end in .onnx, got {args.output}")
    if bool(args.decode_wav_scp) != bool(args.decode_output):
        parser.error("--decode_wav_scp and --decode_output go together")
    if args.decode_wav_scp and args.format != "onnx":
        parser.error("--decode_wav_scp decodes --format onnx; decode sherpa_onnx with "
                     "python -m espnet_plugins.inference.sherpa_decode")
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    # Heavy imports after argument parsing: `--help` stays instant.
    import espnet_plugins  # noqa: F401
    import torch

    from espnet_plugins.export.onnx_export import export_onnx

    torch.set_num_threads(1)
    langs = [x for x in args.allowed_langs.split(",") if x] if args.allowed_langs else None
    try:
        if args.format == "sherpa_onnx":
            from espnet_plugins.export.sherpa_export import export_sherpa_onnx

            report = export_sherpa_onnx(
                args.asr_train_config, args.asr_model_file, args.output, allowed_langs=langs,
                prior_mode=args.prior_mode, soft_floor=args.soft_floor, peak_dbfs=args.peak_dbfs, opset=args.opset,
            )
            print(json.dumps({k: report[k] for k in ("onnx", "bytes", "parameters", "langs", "check")}))
            return
        report = export_onnx(
            args.asr_train_config, args.asr_model_file, args.output, allowed_langs=langs,
            prior_mode=args.prior_mode, soft_floor=args.soft_floor, opset=args.opset,
        )
    except (ValueError, NotImplementedError) as e:  # a bad option or an unsupported model: no traceback
        raise SystemExit(f"export: {e}")
    print(json.dumps({k: report[k] for k in ("onnx", "bytes", "parameters", "langs", "check")}))
    if args.decode_wav_scp:
        from espnet_plugins.inference import onnx_decode

        onnx_decode.main(["--model", args.output, "--wav_scp", args.decode_wav_scp, "--output", args.decode_output])


if __name__ == "__main__":
    main(sys.argv[1:])
