"""Package-level guarantees: which Keras is used, and where flags may live."""
import ast
import pathlib

import keras
import tensorflow as tf

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "magenta_style"
# Modules with a command-line main, and their shared plumbing (cli.py): only these may
# touch absl flags.
ENTRY_POINTS = {"train.py", "export.py", "stylize.py", "evaluate.py", "stylize_video.py",
                "optimize.py", "cli.py"}


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
    offenders = [p.name for p in sorted(PACKAGE.glob("*.py"))
                 if p.name not in ENTRY_POINTS and _imports_absl_flags(p)]
    assert offenders == [], f"library modules must not import absl.flags: {offenders}"


def test_importing_the_package_has_no_side_effects():
    import magenta_style
    assert magenta_style.__version__
