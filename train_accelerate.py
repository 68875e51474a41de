"""Train a PConvUNet (Liu et al. 2018) with Hugging Face accelerate and datasets.

    accelerate launch train_accelerate.py --train_data DIR_OR_HUB_ID --output_dir OUT [...]
    python train_accelerate.py ...                      # single process, same flags

The flags, the loop, checkpoints and export live in ``pconv_hf.training`` (``python train_accelerate.py --help``);
see docs/training.md.
"""

import sys

from pconv_hf.training import main

if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
