"""Train a PConvUNet (Liu et al. 2018) with Hugging Face accelerate and datasets.

    accelerate launch train_accelerate.py --train_data DIR_OR_HUB_ID --output_dir OUT [...]
    python train_accelerate.py ...                      # single process, same flags

The flags live in ``pconv_hf.training_config``, the loop, checkpoints and export in ``pconv_hf.training``, the
command line in ``pconv_hf.cli.train`` (``python train_accelerate.py --help``); see docs/training.md.
"""

import sys

from pconv_hf.cli.train import main

if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
