"""The CPU decode kernels (C++ sources beside this file) and their loader, with PyTorch fallbacks.

The bottom layer: it imports nothing from dscoder.
"""
