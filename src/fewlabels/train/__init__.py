"""Training: settings (``train.config``), the loop core and its callbacks (``train.engine``),
the classifier's ``Trainer`` (``train.loop``), runs (``train.run``, ``train.single``),
self-training and probes.

This ``__init__`` imports nothing, so ``import fewlabels`` stays instant: the package is
also, called, the API's ``train`` (see ``fewlabels/__init__.py``).
"""
