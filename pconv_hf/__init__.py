"""pconv_hf: image inpainting with partial convolutions (Liu et al. 2018), shipped the Hugging Face way.

Conventions:
- Images inside the network are float RGB tensors in [0, 1], shape (N, 3, H, W).
- Masks inside the network are float {0, 1} with **1 = valid (known) pixel**, as in the paper.
- At the user edge (``inpaint()``, the app, the CLI) a mask is **white / nonzero = area to fill**, as in
  diffusers and IOPaint; only those entry points convert.
"""

from .layers import PartialConv2d
from .model import PConvUNet

__version__ = "0.1.0"

__all__ = ["PartialConv2d", "PConvUNet", "__version__"]
