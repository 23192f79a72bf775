"""ESPnet plugins for multilingual CTC ASR with Mixture-of-Experts (BLR-MoE, SMEAR-MoE).

Importing this package first keeps ESPnet offline and quiet (see ``_offline``).
"""
from espnet_plugins import _offline

_offline.setup()

__version__ = "0.1.0"
