"""Compatibility modules: the textbook's helper names on top of cnnlab.

``from cnnlab.compat import d2l`` stands in for ``from d2l import torch as d2l``.
"""
