"""Files with fixed names in directories other users may write (issue 28 item 2): the
train_dir's lock file must never follow a planted symlink or hard link, and an unsafe
directory is refused before anything is written there."""
import contextlib
import os

import pytest

from magenta_style import config as config_lib
from magenta_style.networks import checkpoints
from magenta_style.networks import transformer
from magenta_style.training import dirlock
from magenta_style.training import train_lib

VICTIM_TEXT = b"precious data, not a lock\n"


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim.txt"
    path.write_bytes(VICTIM_TEXT)
    return path


def _lock_path(train_dir):
    return train_dir / dirlock.LOCK_FILENAME


@pytest.mark.parametrize("plant", ["symlink", "dangling_symlink", "hard_link", "fifo"])
def test_a_planted_lock_path_is_refused_and_its_target_untouched(tmp_path, victim, plant):
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    lock = _lock_path(train_dir)
    if plant == "symlink":
        os.symlink(victim, lock)
    elif plant == "dangling_symlink":
        os.symlink(tmp_path / "created_by_the_trainer", lock)
    elif plant == "hard_link":
        os.link(victim, lock)
    else:
        os.mkfifo(lock)
    expected = {"symlink": "is a symlink", "dangling_symlink": "is a symlink",
                "hard_link": "has other hard links", "fifo": "is not a regular file"}[plant]
    with pytest.raises(dirlock.LockError, match=expected) as error:
        with dirlock.hold(str(train_dir)):
            pass
    assert str(lock) in str(error.value) and "\n" not in str(error.value)
    assert victim.read_bytes() == VICTIM_TEXT
    assert not (tmp_path / "created_by_the_trainer").exists()
    # The trainer's own wrapper turns it into one line naming --train_dir.
    with pytest.raises(train_lib.TrainError, match=f"--train_dir={train_dir}"):
        with contextlib.ExitStack() as held:
            train_lib._lock_train_dir(str(train_dir), held)  # pylint: disable=protected-access
    assert victim.read_bytes() == VICTIM_TEXT


def test_a_directory_other_users_can_write_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(dirlock.LockError, match=r"is writable by every user \(mode 0777\)"):
        with dirlock.hold(str(shared)):
            pass
    assert not _lock_path(shared).exists()
    os.chmod(shared, 0o755)
    with dirlock.hold(str(shared)) as path:
        assert open(path).read().startswith(f"pid {os.getpid()} on host")


def test_a_stale_regular_lock_file_is_reused(tmp_path):
    lock = _lock_path(tmp_path)
    lock.write_text("pid 1 on host elsewhere (since long ago), with a much longer line\n")
    with dirlock.hold(str(tmp_path)):
        text = lock.read_text()
    assert text.startswith(f"pid {os.getpid()} on host") and "elsewhere" not in text


def test_magenta_checkpoint_temp_names_cannot_be_planted(tmp_path, victim):
    model = transformer.build_transformer(config_lib.ModelConfig(num_styles=1, alpha=0.25))
    prefix = tmp_path / "back.ckpt"
    # The old temporary names were predictable (the pid): plant links at them. (TF's
    # SaveV2 writes through its own temporary file and a rename as well, so this guards
    # the random name against a future writer that opens the name directly.)
    for suffix in (".index", ".data-00000-of-00001"):
        os.symlink(victim, tmp_path / f".tmp-{os.getpid()}-back.ckpt{suffix}")
    checkpoints.save_magenta_checkpoint(model, str(prefix))
    assert victim.read_bytes() == VICTIM_TEXT
    assert not os.path.islink(str(prefix) + ".index")
    assert checkpoints.checkpoint_problem(str(prefix)) is None
