"""Mixture-of-Experts building blocks for BLR-MoE / LR-MoE.

Dispatch primitive, expert layers, language router and padding-invariant blocks.
"""
