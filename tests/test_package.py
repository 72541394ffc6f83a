"""Package-level guarantees: which Keras is used, and where flags may live."""
import ast
import pathlib
import subprocess
import sys

import keras
import pytest
import tensorflow as tf

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "magenta_style"
# Modules with a command-line main, and their shared plumbing (cli.py): only these may
# touch absl flags.
ENTRY_POINTS = {"train.py", "export.py", "stylize.py", "evaluate.py", "stylize_video.py",
                "optimize.py", "create_style_dataset.py", "demo.py", "cli.py",
                "export_tflite.py", "serving_client.py", "convert_magenta_checkpoint.py",
                "export_magenta_checkpoint.py"}


def test_keras_3_is_the_keras_in_use():
    assert keras.__version__.startswith("3."), keras.__version__
    assert keras.backend.backend() == "tensorflow"
    assert tf.keras.version().startswith("3."), "tf.keras should resolve to Keras 3"


def _imports_absl_flags(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "absl":
            if any(alias.name == "flags" for alias in node.names):
                return True
        if isinstance(node, ast.Import) and any(a.name == "absl.flags" for a in node.names):
            return True
    return False


def test_only_entry_points_define_flags():
    offenders = [p.name for p in sorted(PACKAGE.rglob("*.py"))
                 if p.name not in ENTRY_POINTS and _imports_absl_flags(p)]
    assert offenders == [], f"library modules must not import absl.flags: {offenders}"


@pytest.mark.slow
def test_importing_the_package_has_no_side_effects():
    """In a fresh interpreter (this file has imported TensorFlow already): importing the
    package loads no TensorFlow, Keras, numpy or absl and defines no flags."""
    code = ("import sys\n"
            "import magenta_style\n"
            "assert magenta_style.__version__\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'numpy', 'absl') "
            "if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


# The package's layers, top to bottom (the README's code map): a module may import its
# own layer and the layers below it, never one above. The commands sit on top.
LAYERS = ("commands", "cli", "training", "serving", "optimization", "inference", "data",
          "networks", "config", "media")


def _layer(path):
    relative = path.relative_to(PACKAGE)
    if len(relative.parts) > 1:
        return relative.parts[0]
    stem = relative.stem
    return stem if stem in LAYERS else "commands" if path.name in ENTRY_POINTS else "package"


def _imported_layers(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("magenta_style"):
            parts = node.module.split(".")
            if len(parts) > 1:
                yield node.lineno, parts[1]
            else:
                for alias in node.names:
                    yield node.lineno, alias.name


def test_imports_flow_down_the_layers():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = _layer(path)
        if layer == "package":
            continue
        assert layer in LAYERS, f"{path.relative_to(PACKAGE)} belongs to no layer"
        for line, target in _imported_layers(path):
            target = target if target in LAYERS else "commands"
            if LAYERS.index(target) < LAYERS.index(layer):
                upward.append(f"{path.relative_to(PACKAGE)}:{line} imports {target}")
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)
