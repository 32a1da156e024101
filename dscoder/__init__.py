"""dscoder: the DeepSeek-Coder model family on PyTorch."""

__version__ = "0.1.0"
