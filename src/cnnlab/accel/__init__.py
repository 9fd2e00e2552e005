"""Accelerated training steps: on a CPU, conv -> activation -> pool blocks as one fused C
kernel (``cpu``); on CUDA, the replay of a step from a captured graph (``cuda_graph``)
and the book's first block as fused Triton kernels (``fused``)."""
