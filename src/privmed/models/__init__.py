"""Networks: plain ``nn.Module``s configured by constructor arguments.

``CLASSIFIER_NAMES`` lives here, not in ``classifiers.py``, so that the CLI can list the choices without loading MONAI.
"""

CLASSIFIER_NAMES = ("cnn", "resnet18")
