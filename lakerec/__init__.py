"""LakeRec: Ali-CCP lakehouse pipeline to a two-tower retrieval recommender."""

import os as _os

# TFRS 0.7.7 needs Keras 2 (tf-keras); set before TensorFlow is imported anywhere.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
