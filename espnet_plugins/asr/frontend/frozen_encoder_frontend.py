"""A trained ESPnet ASR encoder, frozen, used as the frontend of another model."""
import hashlib
import importlib.util
import logging
from pathlib import Path
from typing import Optional, Tuple, Union

import humanfriendly
import torch
import yaml
from typeguard import typechecked

from espnet2.asr.frontend.abs_frontend import AbsFrontend


class FrozenEncoderFrontend(AbsFrontend):
    """Runs a trained ESPnet ASR model's frontend + normalize + preencoder + encoder
    (+ postencoder), frozen, and returns its encoder output as features.

    This is the SMEAR-MoE paper's setting: a pretrained encoder stays fixed and only the
    projector (``preencoder: smear_moe``) and a light encoder / CTC head on top train.
    Recipe flow: train a base model (on a subset of languages or on all), then train
    projector variants with

    .. code-block:: yaml

        frontend: frozen_encoder
        frontend_conf:
            asr_train_config: exp/asr_base/config.yaml
            asr_model_file: exp/asr_base/valid.loss.best.pth
        normalize: null        # encoder outputs are already normalised by its layers
        preencoder: smear_moe
        preencoder_conf:
            input_size: 144    # = the base encoder's output_size
            downsample_rate: 1 # the base encoder already subsampled 4x

    The base model is built with ``MoEASRTask`` (so bases with this package's modules
    load; stock ESPnet models load too) and its checkpoint is loaded *strictly*:
    ESPnet's own ``build_model_from_file`` loads with ``strict=False`` and would
    silently leave a mismatched encoder randomly initialised. Paths inside the base
    config (e.g. the global-MVN stats file) are resolved like ESPnet does, relative to
    the working directory, so run from the recipe directory. The module is frozen:
    no gradient, parameters ``requires_grad=False``, and it stays in ``eval`` mode
    (no dropout / SpecAugment) even when the parent model calls ``.train()``.
    A language prior set on the parent (``--allowed_langs``,
    ``Speech2Text.set_language_prior``) also restricts a MoE base model's router: it
    is applied to every router of the parent's submodules, by language name, so the
    base model's own lang list may differ from the parent's.

    Its parameters are part of the parent's ``state_dict``, so the trained model's
    checkpoint is self-contained; ``asr_model_file: null`` builds the architecture
    only, for when the parent checkpoint supplies the weights (e.g. inference on a
    machine without the base checkpoint; the base config and its stats file are still
    needed). Do not set ``init:`` in the parent config: ESPnet's initializer would
    re-initialise the frozen weights after they were loaded.

    The same ``frontend`` slot takes ESPnet's large pretrained encoders on machines
    that have their weights (this project runs offline, so they are never
    downloaded here):

    .. code-block:: yaml

        frontend: whisper           # needs `pip install openai-whisper` + weights
        frontend_conf:
            whisper_model: small
            download_dir: /path/to/whisper   # holding small.pt
            freeze_weights: true
        # or
        frontend: s3prl             # needs s3prl + the upstream checkpoint
        frontend_conf:
            frontend_conf:
                upstream: wavlm_base_plus
            download_dir: /path/to/hub
            multilayer_feature: true

    with ``preencoder_conf.input_size`` set to that encoder's width (768 for
    whisper-small / wavlm-base-plus).

    Args:
        asr_train_config: ``config.yaml`` of the trained base model.
        asr_model_file: Its checkpoint (``*.pth``), or None to build without weights.
        fs: Sampling rate of the input (ESPnet's recipes pass it to every frontend);
            must match the base model's.
        cache: In training mode, keep each utterance's encoder output (keyed by a hash
            of its samples) so that later epochs skip the frozen forward; memory grows
            by the training set's encoder outputs (T' x D floats per utterance). An
            output is the one computed in the batch the utterance first came in: a base
            encoder whose convolutions see the batch padding (the stock ESPnet
            conformer) gives slightly different outputs in another batch, so a cached
            run is not bit-identical to an uncached one. Eval mode never caches.
    """

    @typechecked
    def __init__(
        self,
        asr_train_config: Union[str, Path],
        asr_model_file: Optional[Union[str, Path]] = None,
        fs: Union[int, str] = 16000,
        cache: bool = False,
    ):
        super().__init__()
        self.cache = cache
        self._cache: dict = {}
        # Imported here: espnet_plugins.tasks.asr imports this module to register it.
        if importlib.util.find_spec("espnet_plugins.tasks.asr") is not None:
            from espnet_plugins.tasks.asr import MoEASRTask as task
        else:
            from espnet2.tasks.asr import ASRTask as task

        self._check_fs(asr_train_config, fs)
        model, _ = task.build_model_from_file(asr_train_config, None, "cpu")
        if asr_model_file is not None:
            state = torch.load(asr_model_file, map_location="cpu", weights_only=False)
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as e:
                raise RuntimeError(
                    f"{asr_model_file} does not match the model built from "
                    f"{asr_train_config}; pass the config.yaml saved with that "
                    f"checkpoint. {e}"
                ) from None
        model.requires_grad_(False)
        self.asr_model = model.eval()
        top = model.postencoder if model.postencoder is not None else model.encoder
        self._output_size = top.output_size()
        frozen = sum(p.numel() for p in model.parameters())
        logging.info(
            f"FrozenEncoderFrontend: {type(model.encoder).__name__} from "
            f"{asr_train_config} ({frozen / 1e6:.2f} M frozen parameters), "
            f"output size {self._output_size}"
        )

    @staticmethod
    def _check_fs(asr_train_config: Union[str, Path], fs: Union[int, str]) -> None:
        with open(asr_train_config, encoding="utf-8") as f:
            base_conf = yaml.safe_load(f).get("frontend_conf") or {}
        base_fs = base_conf.get("fs", 16000)
        as_int = [humanfriendly.parse_size(str(x)) for x in (fs, base_fs)]
        if as_int[0] != as_int[1]:
            raise ValueError(
                f"fs={fs} but the base model in {asr_train_config} was trained at "
                f"fs={base_fs}; resample the data or set frontend_conf.fs to match."
            )

    def output_size(self) -> int:
        return self._output_size

    def train(self, mode: bool = True) -> "FrozenEncoderFrontend":
        super().train(mode)
        self.asr_model.eval()  # frozen: no dropout / SpecAugment in training either
        return self

    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Waveform [B, L] -> (encoder output [B, T', D], lengths [B])."""
        if not (self.cache and self.training):
            return self._encode(input, input_lengths)
        keys = [
            hashlib.blake2b(
                input[i, : int(n)].detach().cpu().numpy().tobytes(), digest_size=16
            ).digest()
            for i, n in enumerate(input_lengths)
        ]
        missing = [i for i, k in enumerate(keys) if k not in self._cache]
        if missing:
            idx = torch.tensor(missing, device=input.device)
            lens = input_lengths[idx]
            out, out_lens = self._encode(input[idx, : int(lens.max())], lens)
            for j, i in enumerate(missing):
                self._cache[keys[i]] = out[j, : int(out_lens[j])].clone()
        feats = [self._cache[k] for k in keys]
        lengths = torch.tensor([f.size(0) for f in feats], device=input_lengths.device)
        return torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), lengths

    def _encode(
        self, input: torch.Tensor, input_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            encoder_out, encoder_out_lens = self.asr_model.encode(input, input_lengths)
        if isinstance(encoder_out, tuple):  # interCTC: (final, intermediates)
            encoder_out = encoder_out[0]
        return encoder_out, encoder_out_lens
