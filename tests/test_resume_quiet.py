"""Resuming a run that has already reached train_steps (the quickstart run twice) logs
no "unrestored values" warnings: every object of the run was restored."""
import gc
import logging

import pytest
import tensorflow as tf

from magenta_style import config as config_lib
from magenta_style.data import demo_images
from magenta_style.training import train_lib

pytestmark = pytest.mark.slow


def test_resume_at_the_end_warns_about_nothing(tmp_path, write_demo_data, caplog):
    _, _, dataset = write_demo_data(tmp_path, num_content=2, num_styles=2, content_size=40)
    experiment = config_lib.ExperimentConfig(
        train=config_lib.TrainConfig(train_dir=str(tmp_path / "train"), batch_size=1,
                                     train_steps=2, steps_per_loop=2, save_interval_secs=0,
                                     save_interval_steps=2, save_summaries_secs=0,
                                     summary_interval_steps=0, image_summary_count=0),
        data=config_lib.DataConfig(style_dataset_file=dataset, image_size=32,
                                   content_images=str(tmp_path / demo_images.CONTENT_DIR)),
        loss=config_lib.LossConfig(vgg_checkpoint="standin:0"), alpha=0.25)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    train_lib.run(experiment, progress=lambda _: None, strategy=strategy)
    with caplog.at_level(logging.WARNING):
        result = train_lib.run(experiment, progress=lambda _: None, strategy=strategy)
        gc.collect()  # The restore status warns when it is collected.
    assert result.resumed_from_step == 2 and result.step == 2
    assert "unrestored values" not in caplog.text, caplog.text
    assert "could not be found in the restored object" not in caplog.text, caplog.text
