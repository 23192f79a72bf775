"""Deployment: packed models that load anywhere, ``from_pretrained``, the Hugging Face hub."""
