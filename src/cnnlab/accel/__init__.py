"""Accelerated training steps: the CUDA-graph replay of a step (``cuda_graph``) and the
book's first block as fused Triton kernels (``fused``). The CPU's eager loop needs
neither; the trainer asks for them only on CUDA."""
