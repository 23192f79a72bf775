"""``--router_lr_scale``: the language router trains with its own learning rate.

The router is its own optimizer parameter group with ``lr x router_lr_scale``; every
other parameter keeps ``optim_conf.lr``; the lr scheduler scales both groups alike, so
the ratio holds over the whole schedule. Why: docs/router_diagnosis.md.
"""
import argparse

import pytest
import torch
from espnet2.tasks.abs_task import scheduler_classes

from espnet_plugins.asr.encoder.blr_moe_encoder import BLRMoEEncoder
from espnet_plugins.tasks.asr import MoEASRTask

torch.set_num_threads(1)


class _Model(torch.nn.Module):
    """The two things build_optimizers reads: parameters() and router_parameters()."""

    def __init__(self, router: bool = True):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = BLRMoEEncoder(
            8, output_size=16, attention_heads=2, linear_units=32, num_shared_blocks=1,
            num_moe_blocks=1, num_experts=2, router_channels=8, input_layer="linear",
        )
        if not router:
            self.router_parameters = lambda: []

    def router_parameters(self):
        return list(self.encoder.router_parameters())

    def forward(self, x):
        valid = torch.ones(x.shape[:2], dtype=torch.bool)
        out, _, aux = self.encoder.forward_with_aux(x, valid.sum(1))
        logits = aux["lid_logits"]
        return out.pow(2).mean() + logits.logsumexp(-1).mean() - logits[..., 0].mean()


def _args(scale, **kw):
    a = dict(router_lr_scale=scale, optim="adam", optim_conf={"lr": 1e-3}, sharded_ddp=False,
             exclude_weight_decay=False)
    a.update(kw)
    return argparse.Namespace(**a)


def test_router_gets_its_own_group_and_lr():
    model = _Model()
    optim = MoEASRTask.build_optimizers(_args(0.1), model)[0]
    assert [g["lr"] for g in optim.param_groups] == pytest.approx([1e-3, 1e-4])
    router = {id(p) for p in model.router_parameters()}
    assert {id(p) for p in optim.param_groups[1]["params"]} == router
    assert not router & {id(p) for p in optim.param_groups[0]["params"]}
    n = sum(len(g["params"]) for g in optim.param_groups)
    assert n == len(list(model.parameters()))  # every parameter once


def test_default_is_one_group():
    optim = MoEASRTask.build_optimizers(_args(1.0), _Model())[0]
    assert len(optim.param_groups) == 1


def test_scheduler_keeps_the_ratio_and_steps_scale():
    model = _Model()
    optim = MoEASRTask.build_optimizers(_args(0.1), model)[0]
    sched = scheduler_classes["tristagelr"](
        optim, max_steps=20, warmup_ratio=0.1, hold_ratio=0.4, decay_ratio=0.5,
        init_lr_scale=0.01, final_lr_scale=0.05,
    )
    x = torch.randn(2, 12, 8)
    for step in range(15):  # through warm-up and hold into the decay
        before = {id(p): p.detach().clone() for p in model.parameters()}
        optim.zero_grad()
        model(x).backward()
        optim.step()
        sched.step()
        lrs = [g["lr"] for g in optim.param_groups]
        assert lrs[1] == pytest.approx(0.1 * lrs[0])
    # Adam's step is ~lr per weight: the router moved ~10x less than the rest in the last step.
    router = {id(p) for p in model.router_parameters()}
    moved = {k: [] for k in ("router", "rest")}
    for p in model.parameters():
        d = (p.detach() - before[id(p)]).abs().max()
        moved["router" if id(p) in router else "rest"].append(float(d))
    assert max(moved["router"]) < 0.2 * max(moved["rest"])


def test_errors_say_what_to_do():
    with pytest.raises(ValueError, match="has none"):
        MoEASRTask.build_optimizers(_args(0.1), _Model(router=False))
    with pytest.raises(ValueError, match="must be > 0"):
        MoEASRTask.build_optimizers(_args(0.0), _Model())
    with pytest.raises(ValueError, match="exclude_weight_decay"):
        MoEASRTask.build_optimizers(_args(0.1, exclude_weight_decay=True), _Model())
