"""Executes notebooks/magenta_style_colab.ipynb headlessly against a tiny export.

The code cells run in order in one namespace (what a kernel does), with the
notebook's settings taken from environment variables, so the notebook cannot rot
unnoticed. No Jupyter packages are needed: an .ipynb file is JSON.
"""
import json
import os

import numpy as np
from PIL import Image
import pytest

from magenta_style import config as config_lib
from magenta_style.networks import transformer
from magenta_style.serving import export_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "magenta_style_colab.ipynb")
NUM_STYLES = 2


def code_cells(path):
    """The source of each code cell, in order."""
    with open(path) as f:
        notebook = json.load(f)
    assert notebook["nbformat"] == 4
    return ["".join(cell["source"]) for cell in notebook["cells"]
            if cell["cell_type"] == "code"]


def run_notebook(path):
    """Runs every code cell in one namespace; returns the namespace."""
    namespace = {"__name__": "__main__"}
    for index, source in enumerate(code_cells(path)):
        exec(compile(source, f"{os.path.basename(path)}[code cell {index}]", "exec"),
             namespace)
    return namespace


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, randomize_norms):
    model_config = config_lib.ModelConfig(num_styles=NUM_STYLES, alpha=0.25,
                                          style_names=("ink", "oil"))
    model = transformer.build_transformer(model_config)
    randomize_norms(model, seed=7)
    base = str(tmp_path_factory.mktemp("notebook") / "exports")
    return export_lib.export_saved_model(model, model_config, base, warmup_size=0)


def test_notebook_is_clean_json_without_shell_magics():
    with open(NOTEBOOK) as f:
        notebook = json.load(f)
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
            for line in cell["source"]:
                assert not line.lstrip().startswith(("!", "%")), line


@pytest.mark.slow
@pytest.mark.parametrize("with_image", [False, True])
def test_notebook_runs_headlessly(export_dir, tmp_path, monkeypatch, with_image):
    content = ""
    if with_image:
        content = str(tmp_path / "photo.png")
        pixels = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(content)
    output_dir = tmp_path / "figures"
    monkeypatch.setenv("MAGENTA_STYLE_EXPORT", export_dir)
    monkeypatch.setenv("MAGENTA_STYLE_CONTENT", content)
    monkeypatch.setenv("MAGENTA_STYLE_OUTPUT", str(output_dir))

    namespace = run_notebook(NOTEBOOK)

    assert namespace["num_styles"] == NUM_STYLES
    assert namespace["style_names"] == ["ink", "oil"]
    height, width = (40, 60) if with_image else (96, 128)
    assert namespace["content"].shape == (height, width, 3)
    mixes = namespace["mixes"]
    assert mixes.shape == (5, height, width, 3)
    assert np.all((mixes >= 0.0) & (mixes <= 1.0))
    # The ends of the row are the two styles; the row changes along the way.
    np.testing.assert_allclose(mixes[0], namespace["stylized"][0], atol=1e-5)
    np.testing.assert_allclose(mixes[-1], namespace["stylized"][-1], atol=1e-5)
    assert np.abs(mixes[0] - mixes[2]).max() > 1e-3
    variants = namespace["variants"]
    assert np.abs(variants[0] - variants[2]).max() > 1e-3  # Strength 0.25 vs 1.
    for name, count in (("content", 1), ("styles", NUM_STYLES + 1), ("mixes", 5),
                        ("strength_and_colors", 4)):
        with Image.open(output_dir / f"{name}.png") as figure:
            assert figure.size == (count * width, height)


def test_readme_python_snippets_import_the_modules_they_use():
    # The Colab snippet once called json.loads without importing json.
    import ast
    import glob
    import re
    import sys

    # The README and the reference pages in docs/ that it links to.
    pages = [os.path.join(REPO, "README.md")] + sorted(
        glob.glob(os.path.join(REPO, "docs", "*.md")))
    text = ""
    for page in pages:
        with open(page) as f:
            text += f.read()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    modules = set(sys.stdlib_module_names) | {"np", "tf", "hub", "keras", "grpc", "PIL"}
    for block in blocks:
        tree = ast.parse(block)
        imported = {alias.asname or alias.name.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
        used = {node.value.id for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)}
        missing = sorted((used & modules) - imported)
        assert not missing, f"README snippet uses {missing} without importing them:\n{block}"
