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
    # MLflow's advice to model authors ("integer columns cannot hold missing values"): our
    # pyfunc models declare their signatures; nothing for a job's user. (Its "add type hints to
    # predict" is raised under a filter of its own, which no filter here overrides: our
    # predict methods carry the hint instead.)
    _warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow(\.|$)")
    _os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # its 0% bars per download
    # MLflow sets its own logger's level at its import, from this variable: its INFO lines
    # ("Validating input example against model signature") are for model authors too.
    _os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")



class _QuietNativeImport:
    """Import TensorFlow with the process's stderr (fd 2) on /dev/null, unless --verbose.

    TensorFlow 2.21 writes its native start-up lines (oneDNN, "Could not find cuda drivers",
    "All log messages before absl::InitializeLog()") from C++ before its logging is set up,
    whatever TF_CPP_MIN_LOG_LEVEL says. Only the import is silenced: a Python error raised by
    it still shows (it is printed after fd 2 is back), and so does everything TensorFlow logs later.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        import importlib.machinery

        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        exec_module = spec.loader.exec_module

        def quiet_exec(module):
            _sys.stderr.flush()
            saved = _os.dup(2)
            devnull = _os.open(_os.devnull, _os.O_WRONLY)
            try:
                _os.dup2(devnull, 2)
                exec_module(module)
            finally:
                _os.dup2(saved, 2)
                _os.close(saved)
                _os.close(devnull)

        spec.loader.exec_module = quiet_exec
        return spec


if not VERBOSE and "tensorflow" not in _sys.modules:
    _sys.meta_path.insert(0, _QuietNativeImport())

__version__ = "0.1.0"
