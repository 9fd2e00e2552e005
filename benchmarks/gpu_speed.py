"""The book's recipe on one CUDA GPU, four ways in one process on the same data and seed:
(a) the book's train_ch6 loop (DataLoader with 4 workers on the host, a copy to the GPU
and a host sync per batch), (b) a plain eager loop with the data on the GPU, (c) cnnlab's
path (the step replayed as a CUDA graph, the first block fused), (d) the same with
``--compile``. The loops are cpu_speed.py's, on ``cuda``.

    python benchmarks/gpu_speed.py --epochs 10     # prints one JSON object
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from cpu_speed import main

if __name__ == "__main__":
    if not torch.cuda.is_available():
        sys.exit("gpu_speed.py needs a CUDA device; for the CPU run benchmarks/cpu_speed.py")
    main("cuda")
