"""Every notebook in ``notebooks/`` executes headless, top to bottom, on the tiny organisms.

Each notebook reads ``LRT_NOTEBOOK_ORGANISMS`` (an organism name prefix) in its first
code cell; here it is ``tiny-``, and ``LRT_JAX_CACHE`` points at one session temp dir,
so the tiny organisms are trained once and shared by all four notebooks. A cell error
fails the test (with the cell's traceback); each notebook must also draw at least one
plot (an ``image/png`` output) and print, in its last cell, one JSON line of numbers
that are checked here.

The kernel is a kernelspec written into a temp dir that runs *this* interpreter
(``sys.executable -m ipykernel_launcher``), so the test needs no ``ipykernel install``
and cannot pick up another Python's kernel. The kernel's environment drops the fake
8-device ``XLA_FLAGS`` of ``tests/conftest.py``: a reader's kernel has one CPU device.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from lrt_jax.organisms import get_recipe

REPOSITORY = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPOSITORY / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL_NAME = "lrt-jax-notebook-test"
CELL_TIMEOUT_SECONDS = 900  # generous: first-call compilation on a busy 2-core CI machine
PREFIX = "tiny-"


@pytest.fixture(scope="session")
def kernel_spec_manager(tmp_path_factory) -> KernelSpecManager:
    """A kernelspec manager that knows one kernel: this interpreter with ipykernel."""
    kernels = tmp_path_factory.mktemp("kernels")
    (kernels / KERNEL_NAME).mkdir()
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "lrt_jax notebook test", "language": "python"}
    (kernels / KERNEL_NAME / "kernel.json").write_text(json.dumps(spec))
    return KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)


@pytest.fixture(scope="session")
def kernel_environment(tmp_path_factory) -> dict[str, str]:
    """The kernel's environment: tiny organisms in one shared session cache, one CPU device."""
    env = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    env["LRT_NOTEBOOK_ORGANISMS"] = PREFIX
    env["LRT_JAX_CACHE"] = str(tmp_path_factory.mktemp("lrt_jax_cache"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), env.get("PYTHONPATH")]))
    return env


def execute(path: Path, kernel_spec_manager, env) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    manager = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=kernel_spec_manager)
    client = NotebookClient(notebook, km=manager, timeout=CELL_TIMEOUT_SECONDS,
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute(env=env)  # raises CellExecutionError, with the traceback, on any cell error
    return notebook


def outputs(notebook) -> list:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]


def final_json(notebook) -> dict:
    """The JSON object the notebook's last code cell prints."""
    last = [cell for cell in notebook.cells if cell.cell_type == "code"][-1]
    text = "".join(output.get("text", "") for output in last.outputs if output.output_type == "stream")
    return json.loads(text.strip().splitlines()[-1])


def check_quickstart(numbers: dict) -> None:
    small = get_recipe(PREFIX + "small").model
    batch, seq = numbers["batch_shape"]
    assert numbers["organism"] == PREFIX + "small"
    assert numbers["captured_shape"] == [batch, seq, small.d_model]
    assert numbers["vector_shape"] == [small.d_model]
    assert numbers["sweep_shape"] == [9, batch]


def check_compose_mappers(numbers: dict) -> None:
    layers = [get_recipe(PREFIX + name).model.n_layers for name in ("small", "large")]
    assert numbers["r2_by_layer_pair_shape"] == layers
    assert numbers["mappers"][numbers["best_mapper"]] > 0.5
    assert numbers["streamed_equals_one_shot"]


def check_steering_transfer(numbers: dict) -> None:
    assert numbers["one_call_matches_steps"]
    assert all(0.5 < value <= 1.0 for value in numbers["r2"].values())
    assert numbers["propensity_shape"][0] == 9


def check_knowledge_transfer(numbers: dict) -> None:
    assert len(numbers["per_layer_r2"]) == get_recipe(PREFIX + "small").model.n_layers
    assert all(0.0 <= value <= 1.0 for value in numbers["accuracy_after"].values())
    assert numbers["r2_heldout"] > 0.5


CHECKS = {
    "01_quickstart": check_quickstart,
    "02_compose_mappers": check_compose_mappers,
    "03_steering_transfer": check_steering_transfer,
    "04_knowledge_transfer": check_knowledge_transfer,
}


def test_every_notebook_has_a_check():
    assert sorted(path.stem for path in NOTEBOOKS) == sorted(CHECKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    dirty = [index for index, cell in enumerate(notebook.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have stored outputs; clear them before committing."


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_executes(path, kernel_spec_manager, kernel_environment):
    notebook = execute(path, kernel_spec_manager, kernel_environment)
    assert any("image/png" in output.get("data", {}) for output in outputs(notebook)), f"{path.name} drew no plot."
    CHECKS[path.stem](final_json(notebook))
