"""Shared fixtures. The Hub is never reachable in tests: HF_HUB_OFFLINE is set before anything imports it."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture
def tiny_model():
    """A 5-level PConvUNet with 8 base channels: 64 px inputs, fast on CPU."""
    from pconv_hf import PConvUNet

    torch.manual_seed(0)
    return PConvUNet(layer_size=5, base_channels=8, sample_size=64).eval()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """The tiny model saved with save_pretrained: a folder for --model flags and from_pretrained."""
    from pconv_hf import PConvUNet

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-model")
    PConvUNet(layer_size=5, base_channels=8, sample_size=64).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real photograph, (512, 512, 3) uint8, bundled with scikit-image."""
    from skimage import data

    return data.astronaut()


@pytest.fixture
def fresh_accelerate_state():
    """Accelerator state is a process-wide singleton; every in-process training run starts from a clean one."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()
