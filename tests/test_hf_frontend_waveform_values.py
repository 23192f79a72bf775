"""``frontend: hf_encoder`` on a wav2vec2-class model: each utterance's features equal the
Hugging Face pipeline (its feature extractor's per-utterance normalisation, then the model)
on that utterance alone, and a (B, T, 1) waveform gives what (B, T) does (issue 32: mutants
that skipped the normalisation or dropped the channel survived). Tiny random model, no hub."""
import importlib.util
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("bench_cuda", ROOT / "bench" / "bench_cuda.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench.tiny_hf_encoder(tmp_path_factory.mktemp("hf") / "w2v")


def test_features_equal_the_hf_pipeline_per_utterance_and_ignore_a_channel_axis(tiny):
    from transformers import AutoFeatureExtractor, Wav2Vec2Model

    from espnet_plugins.asr.frontend.hf_encoder_frontend import HFEncoderFrontend

    g = torch.Generator().manual_seed(0)
    x = 0.5 + 0.1 * torch.randn(2, 8000, generator=g)  # a DC offset: normalisation matters
    x[1] = 2.0 * x[1] - 0.3
    lengths = torch.tensor([8000, 5000])
    x[1, 5000:] = 0.0
    fe = HFEncoderFrontend(str(tiny)).eval()
    with torch.no_grad():
        feats, olens = fe(x, lengths)
        same, same_lens = fe(x[..., None], lengths)
    torch.testing.assert_close(same, feats)
    assert same_lens.tolist() == olens.tolist()
    processor = AutoFeatureExtractor.from_pretrained(str(tiny))
    assert processor.do_normalize
    model = Wav2Vec2Model.from_pretrained(str(tiny)).eval()
    for i in range(2):
        inputs = processor(x[i, : lengths[i]].numpy(), sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            ref = model(inputs["input_values"]).last_hidden_state[0]
        n = int(olens[i])
        assert ref.shape[0] == n
        torch.testing.assert_close(feats[i, :n], ref, atol=1e-4, rtol=1e-4)
