"""``python -m fastsam_onnx``: the ``fastsam-onnx`` command."""

import sys

from .cli import main

if __name__ == "__main__":  # importing the module (a walk of the package) runs nothing
    sys.exit(main())
