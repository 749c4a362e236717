"""LakeRec: Ali-CCP lakehouse pipeline to a two-tower retrieval recommender."""

import os as _os
import sys as _sys
import warnings as _warnings

# TFRS 0.7.7 needs Keras 2 (tf-keras); set before TensorFlow is imported anywhere.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# Quiet unless `--verbose` (any job) or LAKEREC_VERBOSE=1. This runs on the first `import
# lakerec`, before any job imports TensorFlow, which reads TF_CPP_MIN_LOG_LEVEL once, at its
# import (3: not even its native "could not load CUDA" / oneDNN / CPU-feature lines).
# The JVM's side is lakerec/conf/log4j2.properties (lakerec.spark).
VERBOSE = _os.environ.get("LAKEREC_VERBOSE") == "1" or "--verbose" in _sys.argv[1:]
if VERBOSE:
    _os.environ["LAKEREC_VERBOSE"] = "1"  # for the Spark factory and child processes
else:
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Library deprecation notices (Petastorm, pyarrow, pandas, TensorFlow, MLflow) name
    # nothing a user of the jobs can change.
    for _category in (FutureWarning, DeprecationWarning, PendingDeprecationWarning):
        _warnings.filterwarnings("ignore", category=_category)

__version__ = "0.1.0"
