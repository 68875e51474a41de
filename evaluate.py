"""Evaluate a PConvUNet against baselines with the paper's protocol (Liu et al. 2018, Table 1).

    python evaluate.py --model OUT --data DIR_OR_HUB_ID [--baselines telea,ns,unet:DIR] [--output_dir DIR]

The same as the ``pconv-evaluate`` command; its flags live in ``pconv_hf.cli.evaluate``, the workflow in
``pconv_hf.evaluation`` (``python evaluate.py --help``).
"""

import sys

from pconv_hf.cli.evaluate import main

if __name__ == "__main__":
    main(sys.argv[1:])
