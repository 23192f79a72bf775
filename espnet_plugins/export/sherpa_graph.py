"""The export graph in the form sherpa-onnx's offline "omnilingual ASR CTC" models take."""
import torch

from espnet_plugins.export.ctc_graph import CTCGraph


class SherpaCTCGraph(torch.nn.Module):
    """Waveform ``x`` [1, S] (as sherpa-onnx passes it) -> CTC log-probs [1, T', V].

    Why this model type: sherpa-onnx's fbank-input CTC types (NeMo, WeNet, zipformer,
    TDNN) compute Kaldi-style frames centred half a hop later than ESPnet's
    ``torch.stft(center=True)`` frames (and NeMo's adds a 0.97 pre-emphasis), which no
    in-graph correction undoes exactly. Its omnilingual type passes the raw samples, so
    the model's own frontend (:class:`FbankGraph`: ESPnet's STFT, log-mel and global MVN)
    runs inside the graph, frame for frame as in PyTorch.

    sherpa-onnx scales each waveform to zero mean and unit variance first, which loses
    its level; the graph restores a fixed level by peak normalisation to
    ``peak_dbfs`` (the built-in corpus peak-normalises every utterance to -1 dBFS, so
    audio at that level gets PyTorch's features back; other audio is gain-normalised).
    ``peak_dbfs=None`` feeds the scaled waveform as it comes. The mean it removes is not
    restored: audio with a DC offset (espeak's, ~5e-4) gets different lowest 2-3 mel bins.

    Routing and pruning are the wrapped :class:`CTCGraph`'s: top-1 dispatch, only the
    kept languages' experts in the file.

    Args:
        graph: the model's :class:`CTCGraph` (already pruned for a language prior).
        peak_dbfs: level the waveform is peak-normalised to, or None.
    """

    def __init__(self, graph: CTCGraph, peak_dbfs=-1.0):
        super().__init__()
        self.graph = graph
        self.peak = None if peak_dbfs is None else float(10 ** (peak_dbfs / 20))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.peak is not None:
            x = x * (self.peak / x.abs().amax(dim=1, keepdim=True).clamp(min=1e-8))
        lengths = torch.ones_like(x, dtype=torch.int64).sum(dim=1)  # traced: follows the input's length
        return self.graph(x, lengths)[0]
