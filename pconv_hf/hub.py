"""The Hugging Face Hub side of a saved model: file names, the model card template, and a quick reachability
probe so that an unreachable Hub fails in seconds instead of minutes of retries."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import constants as hub_constants
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PAPER_URL = "https://arxiv.org/abs/1804.07723"

MODEL_CARD_TEMPLATE = """---
{{ card_data }}
---

# PConvUNet

Image inpainting with partial convolutions ([Liu et al. 2018]({{ paper_url }})), saved with
the `pconv_hf` package (its README and docs/ describe loading, inpainting and training).

```python
from pconv_hf import PConvUNet

model = PConvUNet.from_pretrained("{{ repo_id | default('path/to/this/folder', true) }}")
result = model.inpaint("photo.jpg", "mask.png")  # white in the mask = area to fill
result.save("filled.png")
```
{% if training %}
## Training

{{ training }}
{% endif %}"""


def hub_reachable(model_id: str, cache_dir: str | Path | None, revision: str | None, timeout: float = 3.0) -> bool:
    """Whether the Hub answers; when it does not and ``model_id`` is not cached either, raise at once.

    Without this, an unreachable Hub costs minutes of retries before huggingface_hub gives up.
    """
    endpoint = urlparse(hub_constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    reachable = threading.Event()

    def probe() -> None:
        with contextlib.suppress(OSError), socket.create_connection((endpoint.hostname, port), timeout=timeout):
            reachable.set()

    thread = threading.Thread(target=probe, daemon=True)  # DNS look-ups ignore socket timeouts
    thread.start()
    thread.join(timeout + 1)
    if reachable.is_set():
        return True
    try:
        hf_hub_download(model_id, CONFIG_NAME, cache_dir=cache_dir, revision=revision, local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError) as err:
        raise ValueError(
            f"could not load PConvUNet {model_id!r}: no such local directory, not in the local Hub cache, and "
            f"the Hub ({hub_constants.ENDPOINT}) is unreachable; pass a saved model folder or connect"
        ) from err
    return False
