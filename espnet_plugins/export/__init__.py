"""ONNX export of trained CTC models (see :mod:`espnet_plugins.export.onnx_export`)."""
