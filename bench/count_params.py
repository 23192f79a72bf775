#!/usr/bin/env python3
"""Parameter counts of training configs: stored, active per frame (one expert of each
expert layer), and the language router's.

Builds each model through the task with the recipe's token and language lists (run from
the recipe directory after stage 4), so the counts are those of a real experiment; the
preset header comments quote them.

    cd egs/indic_synth/asr1 && python ../../../bench/count_params.py ../../../conf/train_{dense_conformer,lr_moe,blr_moe}.yaml
"""
import argparse
import sys

from espnet_plugins.asr.moe.expert_linear import ExpertLinear
from espnet_plugins.tasks.asr import MoEASRTask


def count(config: str, token_list: str, lang_list: str) -> dict:
    args = MoEASRTask.get_parser().parse_args([
        "--config", config, "--token_list", token_list, "--lang_list", lang_list,
        "--normalize", "none", "--frontend_conf", "fs=16k"])
    model = MoEASRTask.build_model(args)
    stored = sum(p.numel() for p in model.parameters())
    experts = [m for m in model.modules() if isinstance(m, ExpertLinear)]
    expert_params = sum(p.numel() for m in experts for p in m.parameters())
    num_experts = next((p.shape[0] for m in experts for p in m.parameters()), 1)
    active = stored - expert_params * (num_experts - 1) // num_experts
    router = sum(p.numel() for n, p in model.named_parameters() if "router" in n)
    return {"stored": stored, "active": active, "router": router, "experts": num_experts if experts else 0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("configs", nargs="+")
    p.add_argument("--token_list", default="data/token_list/char/tokens.txt")
    p.add_argument("--lang_list", default="data/lang_list")
    args = p.parse_args(argv)
    for config in args.configs:
        c = count(config, args.token_list, args.lang_list)
        print(f"{config}: stored {c['stored'] / 1e6:.2f} M, active per frame {c['active'] / 1e6:.2f} M, "
              f"router {c['router'] / 1e6:.3f} M ({c['router']}), experts {c['experts']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
