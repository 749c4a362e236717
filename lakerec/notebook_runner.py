"""Dev tooling: a Databricks `.py` notebook source as an .ipynb, converted or executed.

The notebooks under notebooks/ are Databricks source (`# Databricks notebook source`, cells
split by `# COMMAND ----------`, markdown as `# MAGIC %md`). Databricks opens them as they
are; for local Jupyter, convert one and open the .ipynb with the venv's kernel:

    python -m lakerec.notebook notebooks/02_train.py             # -> notebooks/02_train.ipynb

or execute it end to end, headless, in a fresh kernel (what tests/test_notebooks.py does):

    python -m lakerec.notebook notebooks/01_explore.py --execute --param lake=lake

Nothing here runs inside a notebook; `lakerec.notebook` holds what the cells call.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

from lakerec.errors import LakeRecError
from lakerec.notebook import ENV_PREFIX

HEADER = "# Databricks notebook source"
CELL_SEPARATOR = "# COMMAND ----------"
MAGIC = "# MAGIC"
KERNEL_NAME = "lakerec-python"


def read_source(path: str | Path):
    """A Databricks `.py` notebook source as an nbformat v4 notebook.

    Cells are split at `# COMMAND ----------`; a cell whose lines all start with `# MAGIC`
    and whose first line is `%md` becomes a markdown cell; any other magic is refused
    (the notebooks keep to plain Python so that they run the same everywhere).

    Args:
        path: the `.py` source.

    Returns:
        The notebook, not executed, with a plain Python 3 kernelspec.

    Raises:
        LakeRecError: the file is not Databricks source, or holds a magic other than %md.
    """
    import nbformat

    text = Path(path).read_text()
    if not text.startswith(HEADER):
        raise LakeRecError(f"{path} is not Databricks notebook source (its first line must be {HEADER!r})")
    cells = []
    for chunk in re.split(rf"^{re.escape(CELL_SEPARATOR)}[ \t]*$", text[len(HEADER):], flags=re.M):
        source = chunk.strip("\n")
        if not source.strip():
            continue
        lines = source.splitlines()
        if all(ln.startswith(MAGIC) for ln in lines):
            body = [ln[len(MAGIC):].removeprefix(" ") for ln in lines]
            if not body[0].startswith("%md"):
                raise LakeRecError(f"{path}: only %md magic cells are supported, found {body[0].split()[0]!r}")
            body[0] = body[0][3:].lstrip()
            cells.append(nbformat.v4.new_markdown_cell("\n".join(body).strip("\n")))
        else:
            cells.append(nbformat.v4.new_code_cell(source))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def _kernel_manager_class(workdir: Path):
    """A kernel manager class whose only kernel runs on this interpreter (the venv's).

    Whatever kernelspecs the user has installed, the notebook runs with the packages of the
    process that executes it; nbclient creates, owns and shuts down the kernel.

    Args:
        workdir: a scratch folder; the kernelspec is written under it.

    Returns:
        An AsyncKernelManager subclass that finds only that kernelspec.
    """
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    from traitlets import default

    spec_dir = workdir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "LakeRec (this Python)",
        "language": "python",
    }))

    class ThisPythonKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _this_python_specs(self):
            return KernelSpecManager(kernel_dirs=[str(workdir / "kernels")], ensure_native_kernel=False)

    return ThisPythonKernelManager


def execute(
    path: str | Path,
    params: Mapping[str, str] | None = None,
    *,
    extra_cells: Iterable[str] = (),
    timeout: int = 1800,
    env: Mapping[str, str] | None = None,
):
    """Execute a notebook source end to end in a fresh kernel; raise on the first failing cell.

    Args:
        path: the `.py` source.
        params: notebook parameters, passed as LAKEREC_<NAME> environment variables.
        extra_cells: code cells appended after the notebook's own (the tests read results).
        timeout: seconds one cell may take.
        env: the kernel's environment (default: this process's).

    Returns:
        The executed notebook (outputs included).

    Raises:
        nbclient.exceptions.CellExecutionError: a cell failed (the message shows which and why).
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path).resolve()
    nb = read_source(path)
    for source in extra_cells:
        nb.cells.append(nbformat.v4.new_code_cell(source))
    kernel_env = dict(os.environ if env is None else env)
    kernel_env.update({f"{ENV_PREFIX}{k.upper()}": str(v) for k, v in (params or {}).items()})
    kernel_env.setdefault("PYSPARK_PYTHON", sys.executable)
    with tempfile.TemporaryDirectory(prefix="lakerec-kernel-") as tmp:
        client = NotebookClient(
            nb, kernel_name=KERNEL_NAME, kernel_manager_class=_kernel_manager_class(Path(tmp)),
            timeout=timeout, allow_errors=False, shutdown_kernel="graceful",
            resources={"metadata": {"path": str(path.parent)}},  # the kernel starts in notebooks/
        )
        client.execute(env=kernel_env)
    return nb


def main(argv: list[str] | None = None) -> None:
    """`python -m lakerec.notebook SOURCE [-o OUT] [--execute] [--param NAME=VALUE ...]`.

    Args:
        argv: the arguments (default: the command line's).
    """
    from lakerec import cli

    p = argparse.ArgumentParser(
        prog="python -m lakerec.notebook",
        description="Convert a Databricks .py notebook to .ipynb for Jupyter, or execute it end to end.",
    )
    p.add_argument("notebook", help="notebook source, e.g. notebooks/01_explore.py")
    p.add_argument("-o", "--out", help="the .ipynb to write (default: next to the source)")
    p.add_argument("--execute", action="store_true", help="run every cell (fails on the first error)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a notebook parameter, e.g. lake=lake or epochs=1 (repeatable)")
    args = p.parse_args(argv)

    def body():
        import nbformat

        source = Path(args.notebook)
        if not source.is_file():
            raise LakeRecError(f"notebook {source} not found")
        params = {}
        for kv in args.param:
            if "=" not in kv:
                raise LakeRecError(f"--param {kv!r}: expected NAME=VALUE")
            k, v = kv.split("=", 1)
            k = k.strip()
            # Paths on the command line are relative to where it runs, not to the kernel's folder.
            params[k] = str(Path(v).resolve()) if k in ("lake", "conf") and v and "://" not in v else v
        out = Path(args.out) if args.out else source.with_suffix(".ipynb")
        nb = execute(source, params) if args.execute else read_source(source)
        nbformat.write(nb, out)
        print(f"{'executed' if args.execute else 'converted'} {source} -> {out}")

    cli.run_main("notebook", body)


if __name__ == "__main__":
    main()
