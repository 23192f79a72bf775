"""Train (or collect stats for) an ASR model with this package's modules.

Same options as ``python -m espnet2.bin.asr_train`` plus ``--lang_list`` and
``--train_router_only``; see ``--help``.
"""
import espnet_plugins  # noqa: F401  (before espnet2: offline + quiet)

from espnet_plugins.tasks.asr import MoEASRTask


def get_parser():
    return MoEASRTask.get_parser()


def main(cmd=None):
    MoEASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
