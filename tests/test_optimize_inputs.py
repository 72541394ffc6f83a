"""optimize inputs that used to end in a traceback, some after the whole run: a NaN
network init, --style_scale=inf, --output_image=.png, an empty or zero-channel .npy map.
Each is refused up front with one line."""
import math

import numpy as np
from PIL import Image
import pytest

from magenta_style import config as config_lib
from magenta_style import optimize
from magenta_style.networks import checkpoints
from magenta_style.networks import patch_loss
from magenta_style.networks import transformer


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    for name in ("content", "style"):
        Image.fromarray(rng.integers(0, 256, [32, 32, 3], np.uint8)).save(root / f"{name}.png")
    return root


def _main(capsys, *args):
    status = optimize.main(["optimize", *args])
    return status, capsys.readouterr().err


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_style_scale_must_be_finite(value):
    with pytest.raises(config_lib.ConfigError, match="style_scale must be a finite number"):
        config_lib.OptimizeConfig(style_scale=float(value))


def test_output_image_named_only_by_its_suffix(files, capsys):
    status, err = _main(capsys, f"--content_image={files / 'content.png'}",
                        f"--style_images={files / 'style.png'}",
                        f"--output_image={files / '.png'}", "--vgg_checkpoint=standin:0")
    assert status == 2, err
    assert "name a file ending in one of" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("shape", [(0,), (0, 5), (4, 0), (4, 4, 0)])
def test_empty_npy_semantic_map(tmp_path, shape):
    path = tmp_path / "map.npy"
    np.save(path, np.zeros(shape, np.int64))
    with pytest.raises(patch_loss.SemanticMapError, match="empty array") as info:
        patch_loss.load_semantic_map(str(path), (4, 4))
    assert "\n" not in str(info.value)


def test_nan_network_init_is_refused_before_optimizing(files, tmp_path, capsys):
    model_config = config_lib.ModelConfig(1, 0.25)
    model = transformer.build_transformer(model_config)
    model.weights[0].assign(np.full(model.weights[0].shape, math.nan, np.float32))
    model_dir = str(tmp_path / "nan_model")
    checkpoints.save_model(model, model_config, model_dir)
    output = tmp_path / "out.png"
    status, err = _main(capsys, f"--content_image={files / 'content.png'}",
                        f"--style_images={files / 'style.png'}", f"--output_image={output}",
                        f"--init=network:{model_dir}:0", "--vgg_checkpoint=standin:0",
                        "--image_size=32", "--iterations=3", "--optimizer=adam")
    lines = [line for line in err.strip().splitlines() if "vgg.py" not in line]
    assert status == 2, err
    assert len(lines) == 1 and "gives non-finite pixels" in lines[0], err
    assert not output.exists()
