"""``python -m cnnlab`` and the ``cnnlab`` command."""

import os
import sys

from cnnlab import environ


def run() -> None:
    """The command line, from its first import: Ctrl-C while torch is still loading ends
    with one word, as it does later, instead of an import traceback."""
    try:
        from cnnlab.cli import main

        code = main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    if environ.torchrun()[0] > 1:
        # One of torchrun's workers, its work on disk: end it without the interpreter's
        # shutdown. There, a gloo thread still releasing the last collective's tensors needs
        # the GIL, finds the interpreter finalizing and is unwound through a C++ destructor:
        # std::terminate, "terminate called without an active exception" (a core dump shows
        # ProcessGroupGloo::runLoop -> ~AsyncAllreduceWork -> TensorImpl::decref_pyobject ->
        # take_gil -> pthread_exit), in about 1 two-process run in 30 on 2 cores.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
