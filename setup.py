"""ESPnet plugins for multilingual CTC ASR with Mixture-of-Experts (BLR-MoE, SMEAR-MoE)."""
from setuptools import find_packages, setup

setup(
    name="espnet_moe_plugins",
    version="0.1.0",
    description="ESPnet plugins and recipes: BLR-MoE encoder and SMEAR-MoE projector for multilingual CTC ASR",
    packages=find_packages(include=["espnet_plugins", "espnet_plugins.*"]),
    python_requires=">=3.12,<3.14",  # espnet 202611's range
    # What this package imports itself; tools/requirements.txt pins the tested versions.
    install_requires=[
        "torch>=2.11,!=2.12.*,<2.15",
        "torchaudio>=2.11,<2.12",
        "espnet==202611",
        "sentencepiece==0.2.1",
        "numpy>=2,<3",
        "pyyaml>=6,<7",
        "jiwer>=4,<5",
        "editdistance>=0.8,<0.9",  # ESPnet's validation CER (an extra in espnet 202611)
        "typeguard>=4,<5",
        "soundfile>=0.12,<0.15",
        "soxr>=0.3,<2",  # format stage: resampling in process
        "tqdm>=4.66,<5",
        "humanfriendly>=10,<11",
        "matplotlib>=3.8,<4",  # routing analysis plots, ESPnet attention/loss plots
        "tensorboard>=2.15,<3",  # ESPnet's trainer writes its summaries
        "huggingface_hub>=1.0,<3",  # from_pretrained(hub repo id), run.sh stage 13 upload
    ],
    extras_require={"test": ["pytest>=8"], "export": ["onnx>=1.17,<2", "onnxruntime>=1.20,<2", "sherpa-onnx>=2.0.1,<3"]},
)
