"""Every shipped training preset ``conf/train_*.yaml`` builds and trains one step.

Each preset goes through what ``asr_train.py`` does with it: ESPnet's config parser
(unknown top-level keys fail there), ``MoEASRTask.build_model`` (unknown or mistyped
``*_conf`` keys fail there), the optimizer and scheduler the preset names, then one
forward / backward / optimizer step on 2 utterances of noise. A typo in a preset then
fails here, not half an hour into a recipe run. Presets are globbed, so a new one is
covered without editing this file.

``frontend: frozen_encoder`` presets get a randomly initialised base model built from
``conf/train_dense_conformer.yaml`` and saved the way ESPnet's trainer saves one
(``config.yaml`` = the parsed args after the build, plus a state dict), passed the way
run.sh passes it (``--frontend_conf asr_train_config=... --frontend_conf
asr_model_file=...``).
"""
import inspect
from pathlib import Path

import pytest
import torch
import yaml
from espnet2.tasks import asr as espnet_asr
from espnet2.tasks.abs_task import scheduler_classes
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

from espnet_plugins.tasks.asr import MoEASRTask
from espnet_plugins.train.auto_schedule import resolve_auto_schedule

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted((ROOT / "conf").glob("train_*.yaml"))
BASE_PRESET = ROOT / "conf" / "train_dense_conformer.yaml"
LANGS = ["hi", "mr", "ta", "te"]
TOKENS = ["<blank>", "<unk>"] + [chr(0x905 + i) for i in range(40)] + ["<sos/eos>"]
# The modules a preset names and where the built model keeps them.
SLOTS = ("frontend", "specaug", "normalize", "preencoder", "encoder", "model")


def test_presets_are_found():
    assert len(PRESETS) >= 10 and BASE_PRESET in PRESETS


@pytest.fixture(scope="module")
def lists(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lists")
    (tmp / "tokens.txt").write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
    (tmp / "lang_list").write_text("\n".join(LANGS) + "\n", encoding="utf-8")
    return tmp / "tokens.txt", tmp / "lang_list"


def parse(preset: Path, lists, *extra: str):
    tokens, langs = lists
    return MoEASRTask.get_parser().parse_args([
        "--config", str(preset), "--token_list", str(tokens), "--lang_list", str(langs),
        "--normalize", "none", "--frontend_conf", "fs=16k", *extra])


@pytest.fixture(scope="module")
def base_model(tmp_path_factory, lists):
    """A random-weight dense conformer saved like an ESPnet experiment directory."""
    exp = tmp_path_factory.mktemp("asr_base")
    args = parse(BASE_PRESET, lists)
    torch.manual_seed(0)
    model = MoEASRTask.build_model(args)
    with open(exp / "config.yaml", "w", encoding="utf-8") as f:
        yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False)
    state = model.state_dict()
    torch.save(state, exp / "valid.loss.best.pth")
    return exp / "config.yaml", exp / "valid.loss.best.pth", state


def batch(seed: int = 0):
    """1.0 s and 0.8 s of 16 kHz noise, random characters and languages."""
    g = torch.Generator().manual_seed(seed)
    speech = 0.1 * torch.randn(2, 16000, generator=g)
    speech[1, 12800:] = 0.0
    text_lengths = torch.tensor([6, 4])
    text = torch.randint(2, len(TOKENS) - 1, (2, 6), generator=g)  # no blank/unk/sos-eos
    text[1, 4:] = -1  # ESPnet's text padding (ignore_id)
    return dict(speech=speech, speech_lengths=torch.tensor([16000, 12800]), text=text,
                text_lengths=text_lengths, lang=torch.randint(0, len(LANGS), (2, 1), generator=g),
                lang_lengths=torch.ones(2, dtype=torch.long))


def check_lid_stats(model, stats) -> None:
    """LID loss: absent without a router, finite from the first update with one."""
    if not model.router_parameters():
        assert "loss_lid" not in stats
    else:
        assert torch.isfinite(stats["loss_lid"]) and torch.isfinite(stats["lid_acc"])


def train_step(model, optim, scheduler, seed: int = 0):
    loss, stats, weight = model(**batch(seed))
    assert loss.numel() == 1 and bool(torch.isfinite(loss).all()), stats  # [1]: force_gatherable
    assert int(weight) == 2
    for key, value in stats.items():  # every reported statistic is finite (None: not computed)
        assert value is None or bool(torch.isfinite(value).all()), (key, value)
    optim.zero_grad(set_to_none=True)
    loss.backward()
    changing = [p for p in model.parameters() if p.grad is not None and bool(p.grad.abs().sum() > 0)]
    assert changing, "no parameter got a non-zero gradient"
    probe, before = changing[0], changing[0].detach().clone()
    optim.step()
    if scheduler is not None:
        scheduler.step()
    assert not torch.equal(probe.detach(), before), "the optimizer step changed nothing"
    return stats


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_builds_and_trains_one_step(preset, lists, request):
    text = preset.read_text(encoding="utf-8")
    assert text.startswith("#"), f"{preset.name} needs a header comment saying what it is for"
    conf = yaml.safe_load(text)

    frozen = conf.get("frontend") == "frozen_encoder"
    extra = []
    if frozen:
        base_config, base_checkpoint, base_state = request.getfixturevalue("base_model")
        extra = ["--frontend_conf", f"asr_train_config={base_config}",
                 "--frontend_conf", f"asr_model_file={base_checkpoint}"]
    if conf.get("frontend") == "hf_encoder":  # a tiny random model of the preset's class (no download)
        from test_hf_encoder_frontend import tiny_wav2vec2
        hf_dir = tiny_wav2vec2(request.getfixturevalue("tmp_path") / "hf")
        extra = ["--frontend_conf", f"model={hf_dir}", "--preencoder_conf", "input_size=32"]
    args = parse(preset, lists, *extra)
    torch.manual_seed(0)
    model = MoEASRTask.build_model(args).train()

    # The classes the preset names are the ones built (our registered ones included).
    for slot in SLOTS:
        if slot not in conf or slot == "normalize":  # normalize: the test passes none
            continue
        cls = getattr(espnet_asr, f"{slot}_choices").get_class(conf[slot])
        module = model if slot == "model" else getattr(model, slot)
        if cls is None:
            assert module is None, f"{slot}: {conf[slot]!r} but the model has {type(module).__name__}"
        else:
            assert type(module) is cls, f"{slot}: {conf[slot]!r} built {type(module).__name__}"
    assert model.langs == LANGS
    if "langs" in inspect.signature(type(model.encoder).__init__).parameters:
        assert model.encoder.langs == LANGS  # injected from --lang_list
    for key, value in (conf.get("model_conf") or {}).items():
        if hasattr(model, key):
            assert getattr(model, key) == value, key

    optim = MoEASRTask.build_optimizers(args, model)[0]
    resolve_auto_schedule(args, batches=394)  # max_steps: auto (the default corpus's batches per epoch)
    scheduler = scheduler_classes[args.scheduler](optim, **args.scheduler_conf) if args.scheduler else None
    if frozen:
        frontend_state = {k: v.clone() for k, v in model.frontend.state_dict().items()}
        assert frontend_state.keys() == {f"asr_model.{k}" for k in base_state}
        for k, v in base_state.items():  # the base checkpoint was loaded, not re-initialised
            assert torch.equal(frontend_state[f"asr_model.{k}"], v), k

    encoder = model.encoder
    stats = train_step(model, optim, scheduler)
    check_lid_stats(model, stats)
    assert stats["ctc_emission"] is not None and float(stats["ctc_emission"]) >= 0  # the plateau signal
    if model.lid_weight > 0 and hasattr(encoder, "router_parameters") and not frozen:
        router = list(encoder.router_parameters())
        assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in router)
    if "load_balance_weight" in (conf.get("model_conf") or {}) and model.preencoder is not None:
        gated = getattr(model.preencoder, "variant", None) in ("smear", "hard_topk")
        assert ("loss_load_balance" in stats) == gated, sorted(stats)

    if frozen:
        assert not any(p.requires_grad for p in model.frontend.parameters())
        assert all(p.grad is None for p in model.frontend.parameters())
        # ESPnet's LabelSmoothingLoss shares one KLDivLoss (a default argument) between
        # all models, the parent's included: no state, and not the frontend's to freeze.
        outside = {id(m) for n, m in model.named_modules(remove_duplicate=False) if not n.startswith("frontend.")}
        training = [n for n, m in model.frontend.asr_model.named_modules() if m.training and id(m) not in outside]
        assert not training, f"frozen modules in train mode: {training}"
        for k, v in model.frontend.state_dict().items():  # weights and BatchNorm statistics
            assert torch.equal(v, frontend_state[k]), f"frozen {k} changed"


# The training recipe (optimizer, lr schedule, budget, augmentation schedule, SortaGrad,
# checkpoint choice, intermediate CTC) that every preset of one family shares, so that
# rows of RESULTS.md differ only in the model. Families: the CPU recipe (the default
# preset and every model trained from scratch on the built-in corpus), the frozen-encoder
# projectors (their own budget: a frozen base, no SpecAugment). The mini presets are
# smoke tests, not results; the GPU presets (dense, LR-MoE, BLR-MoE) share one GPU recipe, and the
# SMEAR-on-a-pretrained-encoder GPU preset is alone in its family.
RECIPE_KEYS = ("optim", "optim_conf", "scheduler", "scheduler_conf", "max_epoch", "batch_type",
               "batch_bins", "accum_grad", "specaug_start_iter", "sortagrad_epochs",
               "keep_nbest_models", "best_model_criterion")
RECIPE_MODEL_KEYS = ("ctc_weight", "interctc_weight", "lid_weight")


def _family(preset: Path) -> str:
    name = preset.stem
    if "mini" in name:
        return "mini"
    if name.startswith("train_frozen_"):
        return "frozen"
    if name.endswith("_gpu"):
        return "gpu_frozen" if "_hf_" in name else "gpu"
    return "cpu"


def _recipe(preset: Path) -> dict:
    cfg = yaml.safe_load(preset.read_text(encoding="utf-8"))
    out = {k: cfg.get(k) for k in RECIPE_KEYS}
    keys = RECIPE_MODEL_KEYS if cfg.get("encoder") == "blr_moe" else ("ctc_weight", "interctc_weight")
    out.update({f"model_conf.{k}": (cfg.get("model_conf") or {}).get(k) for k in keys})
    return out


def test_lid_weight_is_set_only_where_a_router_uses_it():
    """lid_weight on a model without a language router does nothing (and training warns)."""
    weights = {}
    for preset in PRESETS:
        cfg = yaml.safe_load(preset.read_text(encoding="utf-8"))
        if cfg.get("encoder") != "blr_moe":
            assert "lid_weight" not in (cfg.get("model_conf") or {}), preset.name
        else:
            weights.setdefault(_family(preset), set()).add((cfg.get("model_conf") or {}).get("lid_weight"))
    assert weights["cpu"] == {0.3} and all(len(w) == 1 for w in weights.values()), weights


@pytest.mark.parametrize("family", ["cpu", "frozen", "gpu"])
def test_presets_of_a_family_share_one_training_recipe(family):
    members = [p for p in PRESETS if _family(p) == family]
    assert len(members) >= 2, f"family {family}: {members}"
    ref = BASE_PRESET if family == "cpu" else members[0]
    assert ref in members
    want = _recipe(ref)
    for p in members:
        got = _recipe(p)
        diff = {k: (got[k], want[k]) for k in want.keys() & got.keys() if got[k] != want[k]}
        assert not diff, f"{p.name} trains on another recipe than {ref.name}: {diff}"


def test_gpu_presets_cover_every_family_with_amp():
    """One GPU preset per model family, mixed precision on, schedule sized to the corpus."""
    gpu = {p.stem: yaml.safe_load(p.read_text(encoding="utf-8")) for p in PRESETS if p.stem.endswith("_gpu")}
    assert {"train_dense_conformer_gpu", "train_lr_moe_gpu", "train_blr_moe_gpu", "train_smear_hf_gpu"} <= set(gpu)
    for name, conf in gpu.items():
        assert conf["use_amp"] is True, name
        assert conf["scheduler"] == "tristagelr" and conf["scheduler_conf"]["max_steps"] == "auto", name
    assert gpu["train_blr_moe_gpu"]["encoder_conf"]["moe_attention_projections"] == ["v", "o"]
    assert gpu["train_smear_hf_gpu"]["frontend"] == "hf_encoder" and gpu["train_smear_hf_gpu"]["frontend_conf"]["freeze"]
