"""Tests for tools/export_tflite.py: TFLite outputs agree with the SavedModel.

Tolerances (max abs difference on [0, 1] pixels, randomised gamma/beta): float32
1e-4 (measured ~4e-6: only summation order differs); float16 weights 1e-2 (one
8-bit level is 3.9e-3; measured values are in the test output on failure).
"""
import os
import subprocess
import sys

from ai_edge_litert.interpreter import Interpreter
import numpy as np
import pytest
import tensorflow as tf

# Every test here uses TFLite conversions of an export.
pytestmark = pytest.mark.slow


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "export_tflite.py")
NUM_STYLES = 2
FLOAT32_TOLERANCE = 1e-4
FLOAT16_TOLERANCE = 1e-2


@pytest.fixture(scope="module")
def tool(load_script):
    return load_script(TOOL)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, export_tiny_model):
    """(version_dir, loaded SavedModel) of a tiny model with distinct styles."""
    version_dir = export_tiny_model(tmp_path_factory.mktemp("tflite"), NUM_STYLES, seed=3)
    return version_dir, tf.saved_model.load(version_dir)


def _runner(data, signature="serving_default"):
    # LiteRT's interpreter: tf.lite.Interpreter warns that it is deprecated in its favour.
    interpreter = Interpreter(model_content=data)
    assert list(interpreter.get_signature_list()) == [signature]
    return interpreter.get_signature_runner(signature)


def _inputs(batch, height, width, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.random((batch, height, width, 3), dtype=np.float32)
    weights = rng.random((batch, NUM_STYLES), dtype=np.float32)
    return image, weights


def _reference(loaded, image, weights):
    return loaded.signatures["serving_default"](
        image=image, style_weights=weights)["stylized_image"].numpy()


@pytest.mark.parametrize("quantize,tolerance", [("float32", FLOAT32_TOLERANCE),
                                                ("float16", FLOAT16_TOLERANCE)])
def test_fixed_size_matches_saved_model(tool, exported, quantize, tolerance):
    version_dir, loaded = exported
    data = tool.convert(version_dir, quantize=quantize, input_size=(24, 28), loaded=loaded)
    image, weights = _inputs(1, 24, 28)
    out = _runner(data, "serving_default")(image=image, style_weights=weights)
    ref = _reference(loaded, image, weights)
    assert out["stylized_image"].shape == (1, 24, 28, 3)
    diff = np.abs(out["stylized_image"] - ref).max()
    assert diff < tolerance, f"{quantize}: max abs diff {diff}"


def test_float16_model_is_smaller(tool, exported):
    version_dir, loaded = exported
    size32 = len(tool.convert(version_dir, input_size=(16, 16), loaded=loaded))
    size16 = len(tool.convert(version_dir, quantize="float16", input_size=(16, 16),
                              loaded=loaded))
    assert size16 < 0.7 * size32


def test_dynamic_size_matches_saved_model(tool, exported):
    version_dir, loaded = exported
    data = tool.convert(version_dir, loaded=loaded)
    runner = _runner(data, "serving_default")
    for batch, height, width in [(1, 20, 24), (2, 13, 18)]:
        image, weights = _inputs(batch, height, width, seed=height)
        out = runner(image=image, style_weights=weights)["stylized_image"]
        assert out.shape == image.shape
        assert np.abs(out - _reference(loaded, image, weights)).max() < FLOAT32_TOLERANCE


def test_advanced_and_map_signatures(tool, exported):
    version_dir, loaded = exported
    image, weights = _inputs(1, 16, 20)
    strength = np.array([0.5], np.float32)
    preserve = np.array([True])
    data = tool.convert(version_dir, signature="stylize_advanced", input_size=(16, 20),
                        loaded=loaded)
    out = _runner(data)(image=image, style_weights=weights,
                                             strength=strength, preserve_colors=preserve)
    ref = loaded.signatures["stylize_advanced"](image=image, style_weights=weights,
                                                strength=strength, preserve_colors=preserve)
    ref = ref["stylized_image"].numpy()
    assert np.abs(out["stylized_image"] - ref).max() < FLOAT32_TOLERANCE

    style_map = np.zeros((1, 16, 20, NUM_STYLES), np.float32)
    style_map[:, :8, :, 0] = 1.0
    style_map[:, 8:, :, 1] = 1.0
    data = tool.convert(version_dir, signature="stylize_map", input_size=(16, 20),
                        loaded=loaded)
    out = _runner(data)(image=image, style_map=style_map,
                                        strength=np.ones(1, np.float32))
    ref = loaded.signatures["stylize_map"](image=image, style_map=style_map,
                                           strength=np.ones(1, np.float32))
    assert np.abs(out["stylized_image"] - ref["stylized_image"].numpy()).max() < (
        FLOAT32_TOLERANCE)


def test_command_line(exported, tmp_path):
    version_dir, _ = exported
    output = tmp_path / "out" / "model.tflite"
    result = subprocess.run(
        [sys.executable, TOOL, f"--saved_model={os.path.dirname(version_dir)}",
         f"--output={output}", "--quantize=float16", "--input_size=16x16"],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert output.stat().st_size > 1000 and "wrote" in result.stderr
    assert os.listdir(output.parent) == ["model.tflite"]

    result = subprocess.run(
        [sys.executable, TOOL, f"--saved_model={version_dir}", f"--output={output}",
         "--input_size=16by16"], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2
    assert "export_tflite: error: --input_size='16by16'" in result.stderr
    assert "Traceback" not in result.stderr

    # A bad enum value: absl's FATAL line and status 1 once; now a usage error.
    result = subprocess.run(
        [sys.executable, TOOL, f"--saved_model={version_dir}", f"--output={output}",
         "--signature=serving_bytes"], capture_output=True, text=True, timeout=300,
        check=False)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "signature" in errors[0] and "FATAL" not in result.stderr


def test_parse_size_and_bad_saved_model(tool, tmp_path):
    assert tool.parse_size("384x512") == (384, 512)
    for bad in ("384", "0x10", "axb", "", "1" * 400 + "x2"):
        with pytest.raises(tool.UsageError):
            tool.parse_size(bad)
    with pytest.raises(tool.UsageError, match="at most 16,777,216"):
        tool.parse_size("100000x100000")
    assert tool.parse_size("4096x4096") == (4096, 4096)
    with pytest.raises(tool.UsageError, match="--saved_model"):
        tool.convert(str(tmp_path))


@pytest.mark.parametrize("signature, input_size", [("serving_default", None),
                                                   ("stylize_advanced", (16, 16)),
                                                   ("stylize_map", None)])
def test_converted_models_keep_the_exports_input_checks(tool, exported, signature,
                                                        input_size):
    # Issue 28 item 11: the export's Assert ops do not survive conversion; NaN or 1e30
    # weights gave NaN images and wrong-length weights were broadcast silently.
    version_dir, loaded = exported
    data = tool.convert(version_dir, signature=signature, input_size=input_size,
                        loaded=loaded)
    interpreter = Interpreter(model_content=data)
    raw = interpreter.get_signature_runner("serving_default")
    checked = tool.checked_runner(interpreter, NUM_STYLES)
    image, weights = _inputs(1, 16, 16)
    name = "style_map" if signature == "stylize_map" else "style_weights"

    def call(runner, styles, strength=0.5):
        inputs = {"image": image}
        if signature == "stylize_map":
            inputs["style_map"] = np.broadcast_to(
                np.asarray(styles, np.float32)[:, None, None, :],
                (1, 16, 16, np.shape(styles)[-1])).copy()
        else:
            inputs["style_weights"] = np.asarray(styles, np.float32)
        if signature != "serving_default":
            inputs["strength"] = np.array([strength], np.float32)
        if signature == "stylize_advanced":
            inputs["preserve_colors"] = np.array([False])
        return runner(**inputs)["stylized_image"]

    good = call(raw, weights)
    assert good.shape == (1, 16, 16, 3) and np.all(np.isfinite(good))
    np.testing.assert_array_equal(call(checked, weights), good)
    bad = {"nan": [[np.nan, 1.0]], "huge": [[1e30, 0.0]], "long": [[1.0, 0.0, 0.0]],
           "short": [[1.0]]}
    messages = {"nan": "must be finite", "huge": "at most 1e\\+06", "long": "num_styles=2",
                "short": "num_styles=2"}
    for case, styles in bad.items():
        with pytest.raises(RuntimeError, match="RESHAPE|reshape"):
            call(raw, styles)
        with pytest.raises(ValueError, match=f"{name} must .*{messages[case]}|"
                                             f"{name} .*{messages[case]}"):
            call(checked, styles)
    if signature != "serving_default":
        with pytest.raises(RuntimeError, match="GATHER|gather|out of bounds"):
            call(raw, weights, strength=1.5)
        with pytest.raises(ValueError, match=r"strength must be in \[0, 1\]"):
            call(checked, weights, strength=1.5)
