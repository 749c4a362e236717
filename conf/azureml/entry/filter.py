"""Azure ML Spark entry for `python -m jobs.filter` (Spark jobs run a file, not a module)."""

import runpy
import sys
from pathlib import Path

sys.argv = [sys.argv[0], "filter", *sys.argv[1:]]
runpy.run_path(str(Path(__file__).resolve().with_name("run.py")), run_name="__main__")
