"""The command-line surface around training: what the trainer prints after training,
its recipes in configs/, the progress-line cadence, TF log levels and flag ranges.
No training runs here."""
import json
import os
import pathlib
import re
import sys

from magenta_style.training import train_lib

REPO = pathlib.Path(__file__).resolve().parent.parent

_WHAT_NEXT = """
import json, shutil, sys
from magenta_style import train
out = {}
for train_dir in sys.argv[1:]:
    for installed in (False, True):
        shutil.which = lambda name, installed=installed: "/bin/" + name if installed else None
        out[train_dir, installed] = train.what_next(train_dir, "photos/", "standin:0")
print(json.dumps([[list(k), v] for k, v in out.items()]))
"""


def test_what_next_derives_paths_from_the_run_and_checks_tensorboard(run_command, tmp_path):
    # Once fixed /tmp/exported and /tmp/stylized: a second model silently became
    # version 2 of the first model's export base. And `tensorboard` was suggested
    # although it is not installed by default.
    dirs = {name: str(tmp_path / name) for name in ("run_a", "run_b")}
    proc = run_command([sys.executable, "-c", _WHAT_NEXT, *dirs.values()], cwd=REPO,
                       capture_output=True, text=True, timeout=120, check=False,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = {tuple(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1])}
    runs = {name: {str(installed): printed[d, installed] for installed in (False, True)}
            for name, d in dirs.items()}
    text = runs["run_a"]["True"]
    export_dir = re.search(r"--export_dir=(\S+)", text).group(1)
    output_dir = re.search(r"--output_dir=(\S+)", text).group(1)
    assert export_dir.startswith(str(tmp_path / "run_a")) and output_dir.startswith(
        str(tmp_path / "run_a"))
    assert re.search(r"--export_dir=(\S+)", runs["run_b"]["True"]).group(1) != export_dir
    assert "/tmp/exported" not in text and "/tmp/stylized" not in text
    assert f"TensorBoard: tensorboard --logdir={tmp_path / 'run_a'}" in text
    missing = runs["run_a"]["False"]
    line = [l for l in missing.splitlines() if "TensorBoard" in l][0]
    assert "not installed" in line and '".[tensorboard]"' in line
    assert "Real styles need real VGG-16 weights" in missing


def test_recipes_do_not_fix_num_styles():
    # configs/magenta_monet_10.cfg fixed --num_styles=10, so the README's training
    # example failed on anyone's own styles; the style dataset decides.
    for path in sorted((REPO / "configs").glob("*.cfg")):
        flags = [line.strip() for line in path.read_text().splitlines()
                 if line.strip().startswith("--")]
        assert not [f for f in flags if f.startswith("--num_styles")], path.name
    readme = "".join(path.read_text() for path in
                     [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])
    for name in re.findall(r"--flagfile=configs/(\w+\.cfg)", readme):
        assert (REPO / "configs" / name).is_file(), name


def test_progress_lines_keep_a_regular_cadence(monkeypatch):
    # 15 s log interval at 6.75 s per 25-step call: the trigger fired at the first
    # call past 15 s and reset there, so lines came every 75 steps (300, 375, ...:
    # step 350 never appeared). With half a call of slack it fires at the nearest call.
    clock = [0.0]
    monkeypatch.setattr(train_lib.time, "monotonic", lambda: clock[0])
    trigger = train_lib._Every(0, 15.0, 0)
    logged, step = [], 0
    while step < 400:
        started = clock[0]
        clock[0] += 6.75
        step += 25
        if trigger.due(step, slack_secs=(clock[0] - started) / 2):
            logged.append(step)
            trigger.reset(step)
    assert logged == list(range(50, 401, 50))
    assert not train_lib._Every(0, 15.0, 0).due(25)  # No slack: only past the interval.


def test_quiet_tf_logging_hides_cuinit_errors_without_a_driver(monkeypatch):
    from magenta_style import cli

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.setattr(cli.os.path, "exists", lambda path: False)
    cli.quiet_tf_logging()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"  # No driver: cuInit's error line goes.
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    monkeypatch.setattr(cli.os.path, "exists", lambda path: path == "/proc/driver/nvidia")
    cli.quiet_tf_logging()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # The user's choice wins.
    cli.quiet_tf_logging()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_video_crf_is_range_checked(run_command, tmp_path):
    proc = run_command([sys.executable, "-m", "magenta_style.stylize_video",
                        f"--checkpoint={tmp_path}", f"--input={tmp_path}/a.mp4",
                        f"--output={tmp_path}/b.mp4", "--crf=1000"], cwd=REPO,
                       capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--crf=1000" in proc.stderr.strip().splitlines()[-1]


def test_base_cfg_states_the_config_defaults():
    # base.cfg writes Magenta's defaults out for reading; the dataclasses in config.py
    # hold them. A value changed in one place only must fail here.
    from magenta_style import config as config_lib
    from magenta_style import train

    required = ["--train_dir=/tmp/run", "--style_dataset_file=styles.tfrecord",
                "--vgg_checkpoint=standin:0"]
    stated = [line.strip() for line in (REPO / "configs" / "base.cfg").read_text().splitlines()
              if line.strip().startswith("--")]
    assert len(stated) >= 10
    defaults = train.parse_args(["train", *required]).experiment
    base_cfg = f"--flagfile={REPO / 'configs' / 'base.cfg'}"
    with_base = train.parse_args(["train", base_cfg, *required]).experiment
    assert with_base == defaults
    for line in stated:  # Each line alone, too: a default of another flag cannot hide it.
        assert train.parse_args(["train", line, *required]).experiment == defaults, line
    assert defaults.train == config_lib.TrainConfig(train_dir="/tmp/run")
    assert defaults.loss == config_lib.LossConfig(vgg_checkpoint="standin:0")
    assert defaults.data == config_lib.DataConfig(style_dataset_file="styles.tfrecord")
