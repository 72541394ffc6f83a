"""A damaged "train" section in a model's config.json: `evaluate` and
`optimize --init=network:` refuse it with one line naming the file (no traceback)."""
import json

import pytest

from magenta_style import config as config_lib
from magenta_style.networks import checkpoints
from magenta_style.networks import transformer
from magenta_style.optimization import optimize_lib
from magenta_style.training import evaluate_lib

# Eight ways a hand-edited or corrupt config.json gets its "train" section wrong.
BAD_TRAIN_SECTIONS = {
    "a list": [],
    "a string": "train",
    "loss not an object": {"loss": 5, "data": {"style_dataset_file": "s.tfrecord"}},
    "unknown loss field": {"loss": {"bogus_weight": 1.0},
                           "data": {"style_dataset_file": "s.tfrecord"}},
    "weights not a mapping": {"loss": {"content_weights": "garbage"},
                              "data": {"style_dataset_file": "s.tfrecord"}},
    "weight not a number": {"loss": {"style_weights": {"vgg_16/conv1": "heavy"}},
                            "data": {"style_dataset_file": "s.tfrecord"}},
    "data not an object": {"loss": {}, "data": ["s.tfrecord"]},
    "dataset not a path": {"loss": {}, "data": {"style_dataset_file": 7}},
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("model")
    model_config = config_lib.ModelConfig(2, 0.25)
    checkpoints.save_model(transformer.build_transformer(model_config), model_config,
                           str(directory))
    return directory


def _damage(model_dir, train):
    path = model_dir / config_lib.CONFIG_FILENAME
    saved = json.loads(path.read_text())
    saved["train"] = train
    path.write_text(json.dumps(saved))
    return str(path)


@pytest.mark.parametrize("case", sorted(BAD_TRAIN_SECTIONS))
def test_evaluate_refuses_a_bad_train_section(model_dir, tmp_path, case):
    where = _damage(model_dir, BAD_TRAIN_SECTIONS[case])
    with pytest.raises(evaluate_lib.EvalError) as info:
        evaluate_lib.evaluate_checkpoint(str(model_dir), str(tmp_path / "eval"),
                                         str(tmp_path / "no_content"))
    message = str(info.value)
    assert where in message and "\n" not in message, message


@pytest.mark.parametrize("case", sorted(BAD_TRAIN_SECTIONS))
def test_optimize_network_init_refuses_a_bad_train_section(model_dir, tmp_path, case):
    _damage(model_dir, BAD_TRAIN_SECTIONS[case])
    cfg = config_lib.OptimizeConfig(content_image=str(tmp_path / "c.png"), style_images=(),
                                    output_image=str(tmp_path / "o.png"),
                                    init=f"network:{model_dir}:0")
    with pytest.raises(optimize_lib.OptimizeError) as info:
        optimize_lib._network_objective(cfg, str(model_dir), "0")  # pylint: disable=protected-access
    message = str(info.value)
    assert str(model_dir) in message and "\n" not in message, message
