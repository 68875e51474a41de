"""The console commands, one module each; every one is a thin mapping of flags onto the library.

- ``pconv-inpaint`` (:mod:`.inpaint`): fill a photo, or a folder of photos, with ``pconv_hf.inpaint``.
- ``pconv-evaluate`` (:mod:`.evaluate`): the paper's protocol (``pconv_hf.evaluation``) or photos at their own
  size (``pconv_hf.evaluation_native``).
- ``pconv-anomaly`` (:mod:`.anomaly`): ``fit`` / ``score`` / ``threshold`` with ``pconv_hf.anomaly``.
- ``pconv-export`` (:mod:`.export`): a model to ONNX (``pconv_hf.onnx``) or to the browser page (``pconv_hf.web``).
- :mod:`.common`: what they share: one-line errors and exit status 1, ``--device`` / ``--dtype``, bounded int
  flags, the model a ``--model`` flag names.

``train_accelerate.py`` (flags generated from ``pconv_hf.training_config``), ``evaluate.py`` and ``app.py`` are the
checkout's scripts. Nothing is imported here, so a command loads only what it uses.
"""
