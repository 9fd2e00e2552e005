"""The names of what cnnlab draws, apart from the drawing code (which loads torch and
matplotlib), so that the command line lists them in its help at once."""

# `cnnlab viz KIND RUN`: the figures of a run (report.make_figure draws each)
FIGURES = (
    "curves",
    "runs",
    "confusion",
    "confusion-normalized",
    "per-class",
    "mistakes",
    "kernels",
    "feature-maps",
    "activations",
)
# `cnnlab animate KIND`: the chapter's operations, frame by frame (viz.animate)
ANIMATIONS = ("conv", "pool", "channels", "conv1x1")
# `cnnlab demo NAME`: the chapter's demonstrations (cnnlab.demos.DEMOS, in this order)
DEMOS = ("edges", "learn-kernel", "kernels", "padding-stride", "channels", "pooling")
# `cnnlab demo learn-kernel --kernel K`: the kernels it learns (cnnlab.demos.TARGETS)
LEARNED_KERNELS = ("vertical", "horizontal", "diagonal", "laplacian")
