"""``frontend: hf_encoder``: a real pretrained encoder class (transformers WhisperModel / Wav2Vec2Model,
as MMS), here tiny and randomly initialised, saved with save_pretrained to a tmp dir (no download).

Checks: output frames and lengths follow the model's own frame arithmetic, padding is
cut off, the frozen encoder gets no gradient and stays in eval mode while the parent
trains, the SMEAR GPU preset trains a step on it (tests/test_presets.py), and a
mismatched sampling rate is a clear error.
"""
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


def tiny_wav2vec2(path: Path) -> Path:
    """Wav2Vec2Model (MMS's class), 2 layers x 32, stride 320 (20 ms frames): bench_cuda's tiny model."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_cuda", Path(__file__).resolve().parents[1] / "bench" / "bench_cuda.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench.tiny_hf_encoder(path)


def tiny_whisper(path: Path) -> Path:
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(0)
    cfg = WhisperConfig(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
                        max_source_positions=1500, max_target_positions=16, vocab_size=64, pad_token_id=0,
                        bos_token_id=1, eos_token_id=2, decoder_start_token_id=3)
    WhisperModel(cfg).save_pretrained(path)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hf")
    return {"wav2vec2": tiny_wav2vec2(tmp / "w2v"), "whisper": tiny_whisper(tmp / "whisper")}


def _batch():
    g = torch.Generator().manual_seed(0)
    x = 0.1 * torch.randn(2, 32000, generator=g)
    x[1, 16000:] = 0.0
    return x, torch.tensor([32000, 16000])


@pytest.mark.parametrize("kind, frames", [("wav2vec2", (99, 49)), ("whisper", (100, 50))])
def test_frames_lengths_and_frozen(models, kind, frames):
    from espnet_plugins.asr.frontend.hf_encoder_frontend import HFEncoderFrontend

    fe = HFEncoderFrontend(str(models[kind]))
    assert fe.output_size() == 32 and fe.is_whisper == (kind == "whisper")
    parent = torch.nn.Sequential(fe, torch.nn.Linear(32, 4)).train()
    assert not fe.encoder.training and all(not p.requires_grad for p in fe.encoder.parameters())
    x, lengths = _batch()
    feats, olens = fe(x, lengths)
    assert olens.tolist() == list(frames) and feats.shape == (2, frames[0], 32)
    loss = parent[1](feats).sum()
    loss.backward()
    assert parent[1].weight.grad is not None and all(p.grad is None for p in fe.encoder.parameters())
    alone, n = fe(x[1:, :16000], lengths[1:])  # the short utterance alone: same valid frames
    assert n.tolist() == [frames[1]]
    tol = 1e-4 if kind == "wav2vec2" else 1e-5
    assert torch.allclose(alone[0, : frames[1]], feats[1, : frames[1]], atol=tol)
    layer0 = HFEncoderFrontend(str(models[kind]), layer=0)(x, lengths)[0]  # the input embeddings
    assert layer0.shape == feats.shape and not torch.allclose(layer0, feats)


def test_trainable_encoder_and_errors(models):
    from espnet_plugins.asr.frontend.hf_encoder_frontend import HFEncoderFrontend

    fe = HFEncoderFrontend(str(models["wav2vec2"]), freeze=False).train()
    assert fe.encoder.training
    feats, _ = fe(*_batch())
    feats.sum().backward()
    assert any(p.grad is not None for p in fe.encoder.parameters())
    with pytest.raises(ValueError, match="fs=8000 but .* expects 16000 Hz audio"):
        HFEncoderFrontend(str(models["wav2vec2"]), fs="8k")


def test_registered_for_the_task():
    from espnet2.tasks import asr as espnet_asr

    from espnet_plugins.asr.frontend.hf_encoder_frontend import HFEncoderFrontend
    from espnet_plugins.tasks.asr import MoEASRTask  # noqa: F401  (registers)

    assert espnet_asr.frontend_choices.get_class("hf_encoder") is HFEncoderFrontend
