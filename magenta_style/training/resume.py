"""What the trainer does to its train_dir's checkpoints before it resumes (chief only).

- `clean_checkpoint_leftovers`: removes what a save killed half-way left behind.
- `find_resume_checkpoint`: the checkpoint to resume from, the newest one that reads
  back whole (networks/checkpoints.find_readable_checkpoint, which every loader of a
  train_dir shares), reporting what was passed over and rebuilding a lost, garbled or
  stale `checkpoint` state file, so that tf.train.latest_checkpoint and the
  CheckpointManager agree with the files again.

Only the process that holds the directory's lock (dirlock) may call them: a live
trainer's save in progress looks exactly like a killed one's leftovers.
"""
import os
import re
import shutil

from absl import logging
import tensorflow as tf

from magenta_style.networks import checkpoints

# What a save killed half-way leaves: the manager's staging directory and the
# `checkpoint` state file's temporary copy.
_LEFTOVER = re.compile(r"^(" + checkpoints.MANAGER_PREFIX + r"-[0-9]+_temp|checkpoint\.tmp.*)$")


def clean_checkpoint_leftovers(directory):
    """Removes `ckpt-N_temp/` and `checkpoint.tmp*` that a killed save left in `directory`.

    Call it only while holding the directory's lock (see dirlock): a live trainer's
    save in progress looks exactly like these leftovers.

    Returns:
      sorted list of the names removed.
    """
    removed = []
    for name in sorted(os.listdir(directory)):
        if not _LEFTOVER.match(name):
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
        removed.append(name)
    return removed



def find_resume_checkpoint(directory, repair=True, report=None):
    """The newest checkpoint of a training directory that reads back whole.

    See checkpoints.find_readable_checkpoint: numbered checkpoints are tried newest
    first, an unreadable one is passed over with a report.

    Args:
      directory: str, a training directory.
      repair: rewrite the state file when it is missing, garbled or names another
        checkpoint than the one chosen, listing the readable numbered checkpoints
        (only the process that holds the directory's lock may do this).
      report: optional callable(str) for what was passed over or repaired.

    Returns:
      str, the checkpoint prefix, or None when the directory holds no checkpoint.

    Raises:
      checkpoints.CheckpointError: checkpoint files exist but none reads back (the
        message says how to start over).
    """
    report = report or (lambda message: logging.warning("%s", message))
    found = checkpoints.find_readable_checkpoint(directory)
    if found.prefix is None:
        return None
    if found.passed_over:
        report(found.passed_over_message())
    if found.stale and repair:
        tf.compat.v1.train.update_checkpoint_state(
            directory, found.prefix,
            all_model_checkpoint_paths=list(found.earlier) + [found.prefix])
        report(f"the {checkpoints.STATE_FILENAME} state file of {directory} was {found.stale}; "
               f"rebuilt it from the checkpoint files (resuming from "
               f"{os.path.basename(found.prefix)})")
    return found.prefix
