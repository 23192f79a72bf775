"""``SortaGradIterFactory``: the first epochs in order of increasing utterance length."""
from espnet2.iterators.abs_iter_factory import AbsIterFactory
from espnet2.iterators.sequence_iter_factory import RawSampler, SequenceIterFactory


class SortaGradIterFactory(AbsIterFactory):
    """SortaGrad (Amodei et al., 2016, "Deep Speech 2"): training epochs ``1..epochs`` visit
    the mini-batches from the shortest utterances to the longest; later epochs are the
    inner factory's (ESPnet: shuffled by ``seed + epoch``), so a run with ``epochs: 0`` is
    stock ESPnet. Short utterances first give CTC easy alignments while it is on its
    blank plateau. ESPnet's length-bucketing samplers (``numel``, ``length``, ...) emit
    batches sorted by length in the ``--sort_batch`` direction; we reverse them when it
    is ``descending`` (ESPnet's default). Batch composition is unchanged: only their
    order differs. Wraps a :class:`SequenceIterFactory` (any ``batch_type`` but
    ``unsorted``, whose batches have no length order).

    Args:
        inner: the task's training iterator factory.
        epochs: number of leading epochs in ascending length order.
        sort_batch: the ``--sort_batch`` the batches were built with.
    """

    def __init__(self, inner: SequenceIterFactory, epochs: int, sort_batch: str):
        if not isinstance(inner, SequenceIterFactory):
            raise TypeError(
                f"sortagrad_epochs needs ESPnet's sequence iterator (iterator_type: sequence), "
                f"got {type(inner).__name__}; set sortagrad_epochs: 0"
            )
        if sort_batch not in ("ascending", "descending"):
            raise ValueError(f"sort_batch must be ascending or descending, got {sort_batch!r}")
        self.inner, self.epochs = inner, epochs
        batches = list(inner.sampler.generate(inner.seed))
        self.ascending = batches[::-1] if sort_batch == "descending" else batches

    def build_iter(self, epoch: int, shuffle: bool = None):
        if epoch > self.epochs:
            return self.inner.build_iter(epoch, shuffle)
        # build_iter reads self.sampler once, into the DataLoader it returns.
        sampler, self.inner.sampler = self.inner.sampler, RawSampler(self.ascending)
        try:
            return self.inner.build_iter(epoch, shuffle=False)
        finally:
            self.inner.sampler = sampler
