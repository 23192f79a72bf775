"""ESPnet plugins for multilingual CTC ASR with Mixture-of-Experts (BLR-MoE, SMEAR-MoE)."""
from setuptools import find_packages, setup

setup(
    name="espnet_moe_plugins",
    version="0.1.0",
    description="ESPnet plugins and recipes: BLR-MoE encoder and SMEAR-MoE projector for multilingual CTC ASR",
    packages=find_packages(include=["espnet_plugins", "espnet_plugins.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch==2.9.1",
        "torchaudio==2.9.1",
        "espnet==202511",
        "sentencepiece==0.2.0",
        "jiwer",
        "editdistance",  # espnet depends on it too; we import it directly
        "pyyaml",
        "numpy>=2",
        "einops",
        "tensorboard",
        "matplotlib",
        "ci_sdr",
        "fast_bss_eval",
    ],
    extras_require={"test": ["pytest"]},
)
