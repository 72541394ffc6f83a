"""Shared pytest set-up for magenta_style.

- Splits the CPU into two logical devices before TensorFlow initialises them, so
  the 2-replica MirroredStrategy tests can run on a CPU-only machine.
- `fixtures_dir`: the reference outputs of the original Magenta code. Missing
  fixtures skip the parity tests with a reason, except when
  MAGENTA_STYLE_REQUIRE_FIXTURES=1 (set by .ci/run), where they fail instead.
- Two tiers: `slow` (registered in pytest.ini) marks every test that runs a subprocess, a
  training run, an export, TFLite or video. Files of such tests carry `pytestmark`; single
  tests carry `@pytest.mark.slow`, and a test that asks for `run_command` (the one way tests
  start a subprocess outside slow files) is marked here automatically.
  tests/test_tiers.py scans the tests and fails on a heavy test without the mark.
- Memory: after each test file, the custom gradients it traced are unregistered and Keras'
  global state is cleared and garbage collected, so one pytest worker running many files
  stays small. The objects alive after collection (the imported modules) are frozen out of
  the garbage collector's scans (gc.freeze): walking them added about 0.2 s to every full
  collection in a worker. MAGENTA_STYLE_RSS_LOG=path appends each
  file's peak and current resident memory of the worker to that file.
"""
import ctypes
import gc
import importlib.util
import os
import pathlib
import resource
import signal
import subprocess
import time

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
NUM_LOGICAL_CPUS = 2


def pytest_configure(config):
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * NUM_LOGICAL_CPUS)
    except RuntimeError:
        pass  # Devices were already initialised (e.g. by a plugin); tests that need 2 check.
    # Unit tests never parse absl flags; CLI tests pass argv explicitly.
    from absl import flags
    flags.FLAGS.mark_as_parsed()


@pytest.hookimpl(tryfirst=True)  # Before `-m` deselects: the mark must be there by then.
def pytest_collection_modifyitems(items):
    for item in items:
        if "run_command" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def pytest_collection_finish(session):
    # TensorFlow's, Keras' and the tests' modules live as long as the worker: a full
    # collection need not walk them again (the per-file ones below, and the automatic
    # ones during tracing).
    gc.collect()
    gc.freeze()


class _CommandRunner:
    """`run_command(argv, **kwargs)` is subprocess.run; `run_command.popen` is subprocess.Popen."""

    def __call__(self, *args, **kwargs):
        return subprocess.run(*args, **kwargs)

    popen = staticmethod(subprocess.Popen)


@pytest.fixture
def run_command():
    """Runs a subprocess (subprocess.run; `.popen` for subprocess.Popen). A test that uses it,
    directly or through its fixtures, is marked `slow` by pytest_collection_modifyitems."""
    return _CommandRunner()


def _kill_9_at_checkpoint(proc, train_dir, step, timeout):
    """Kills the training subprocess `proc` with SIGKILL (mid-run, perhaps mid-save) once
    it has written ckpt-`step` or later in `train_dir`; fails the test when it exits or
    `timeout` seconds pass first. The process is reaped either way."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            latest = tf.train.latest_checkpoint(str(train_dir))
            if latest and int(latest.rsplit("-", 1)[1]) >= step:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the training subprocess wrote no checkpoint in time")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def kill_9_at_checkpoint():
    """`kill_9_at_checkpoint(proc, train_dir, step, timeout)`: see _kill_9_at_checkpoint."""
    return _kill_9_at_checkpoint


def _resident_mb():
    """(peak, current) resident memory of this process in MB (Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KB.
    try:
        with open("/proc/self/statm") as statm:
            current = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        current = float("nan")
    return peak, current


def _return_freed_memory_to_the_system():
    """glibc keeps freed heap pages in its arenas; TensorFlow's many threads make many
    arenas, so a long-lived worker's resident size only grows. malloc_trim hands the
    free pages back (a no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@pytest.fixture(scope="module", autouse=True)
def _release_memory_after_each_file(request):
    """Clears Keras' global state and collects garbage after a test file, so that models the
    file built are freed before the worker's next file (module fixtures end before this).
    The custom gradients the file traced are unregistered too: TensorFlow's registry
    would keep every graph that holds one (kernels.custom_gradients_released)."""
    from magenta_style.networks import kernels

    with kernels.custom_gradients_released():
        yield
    import tensorflow as tf

    tf.keras.backend.clear_session(free_memory=True)  # It runs gc.collect() itself.
    _return_freed_memory_to_the_system()
    log = os.environ.get("MAGENTA_STYLE_RSS_LOG")
    if log:
        peak, current = _resident_mb()
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with open(log, "a") as out:
            out.write(f"{worker} pid={os.getpid()} {request.module.__name__} "
                      f"peak_mb={peak:.0f} after_mb={current:.0f}\n")


def _fixtures_root():
    env = os.environ.get("MAGENTA_STYLE_FIXTURES")
    return pathlib.Path(env) if env else REPO_ROOT.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir():
    """pathlib.Path of the Magenta reference fixtures (skips or fails when absent)."""
    root = _fixtures_root()
    if (root / "magenta").is_dir():
        return root
    reason = (f"Magenta reference fixtures not found at {root} "
              "(set MAGENTA_STYLE_FIXTURES to the fixtures directory)")
    if os.environ.get("MAGENTA_STYLE_REQUIRE_FIXTURES") == "1":
        pytest.fail(reason + "; MAGENTA_STYLE_REQUIRE_FIXTURES=1 forbids skipping parity tests")
    pytest.skip(reason)


def _load_script(path):
    """Imports a Python file that is not in a package (tools/*.py, fixture scripts)."""
    path = pathlib.Path(path)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_script():
    """`load_script(path)` -> the module of a standalone script, e.g. tools/export_tflite.py."""
    return _load_script


def _write_demo_data(root, num_content, num_styles, content_size, style_size=32):
    """Draws demo content/style images into root and writes their style dataset with the
    seed-0 stand-in VGG. Returns (content files, style files, dataset path)."""
    from magenta_style.data import demo_images
    from magenta_style.data import style_dataset
    from magenta_style.networks import vgg

    contents, styles = demo_images.write_demo_images(
        root, num_content=num_content, num_styles=num_styles, content_size=content_size,
        style_size=style_size)
    dataset = str(root / "styles.tfrecord")
    style_dataset.write_style_dataset(dataset, styles, vgg_model=vgg.build_vgg16("standin:0"))
    return contents, styles, dataset


@pytest.fixture(scope="session")
def write_demo_data():
    """`write_demo_data(root, num_content, num_styles, content_size, style_size=32)` ->
    (content files, style files, style dataset path): tiny demo data for training runs."""
    return _write_demo_data


def _export_tiny_model(root, num_styles, seed):
    """Exports a random alpha-0.25 network with distinct styles under root/exports (no
    warmup file); returns the version directory."""
    from magenta_style import config as config_lib
    from magenta_style.networks import transformer
    from magenta_style.serving import export_lib

    model_config = config_lib.ModelConfig(num_styles=num_styles, alpha=0.25)
    model = transformer.build_transformer(model_config)
    _randomize_norms(model, seed=seed)
    return export_lib.export_saved_model(model, model_config, str(root / "exports"),
                                         warmup_size=0)


@pytest.fixture(scope="session")
def export_tiny_model():
    """`export_tiny_model(root, num_styles, seed)` -> version dir of a tiny export."""
    return _export_tiny_model


@pytest.fixture(scope="session")
def slim_vgg16(fixtures_dir):
    """The fixtures' slim_vgg16.py: writes TF-slim checkpoints of stand-in VGG weights."""
    return _load_script(fixtures_dir / "slim_vgg16.py")


@pytest.fixture(scope="session")
def seed7_vgg(slim_vgg16, tmp_path_factory):
    """The fixtures' seed-7 stand-in VGG: slim_vgg16.py writes a TF-slim checkpoint, and
    the real slim loader (vgg.build_vgg16) reads it."""
    from magenta_style.networks import vgg

    prefix = slim_vgg16.write_checkpoint(str(tmp_path_factory.mktemp("vgg") / "vgg_16.ckpt"),
                                         seed=7)
    return vgg.build_vgg16(prefix)


def _randomize_norms(model, seed=0):
    """Gives every style distinct gamma/beta rows (freshly built tables are 1s and 0s)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for v in model.weights:
        if v.path.endswith("gamma"):
            v.assign(1.0 + 0.5 * rng.standard_normal(v.shape).astype(np.float32))
        elif v.path.endswith("beta"):
            v.assign(0.5 * rng.standard_normal(v.shape).astype(np.float32))


@pytest.fixture(scope="session")
def randomize_norms():
    """`randomize_norms(model, seed=0)`: makes a tiny model's styles differ."""
    return _randomize_norms


@pytest.fixture
def unwritable_dir(tmp_path):
    """An existing directory this process cannot write: chmod 555, or for root (who ignores
    permission bits) a read-only kernel filesystem such as /sys. Skips when none is found."""
    if os.geteuid() != 0:
        path = tmp_path / "read_only"
        path.mkdir()
        path.chmod(0o555)
        yield str(path)
        path.chmod(0o755)
        return
    for path in ("/sys", "/proc/sys"):
        try:
            os.close(os.open(os.path.join(path, ".magenta_style_write_test"),
                             os.O_RDWR | os.O_CREAT))
        except OSError:
            yield path
            return
    pytest.skip("no unwritable directory for root here")


# ---------------------------------------------------------------------------------------
# Magenta's arbitrary-style model, tiny: one network, checkpoint and export for the session.


def _tiny_arbitrary_network(seed=3):
    """A random-weight alpha-0.25 arbitrary-style network whose styles differ."""
    import numpy as np

    from magenta_style.networks import arbitrary

    model = arbitrary.build_arbitrary(alpha=0.25)
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if v.trainable:
            scale = 0.3 if "StyleNorm" in v.path else 0.1
            v.assign(scale * rng.standard_normal(v.shape).astype(np.float32))
    return model


@pytest.fixture(scope="session")
def tiny_arbitrary(tmp_path_factory):
    """{"network": a tiny arbitrary.ArbitraryStyleNetwork (random weights, alpha 0.25),
    "checkpoint": its native checkpoint prefix, "config": its ModelConfig}."""
    from magenta_style import config
    from magenta_style.networks import arbitrary_checkpoints

    root = tmp_path_factory.mktemp("tiny_arbitrary")
    network = _tiny_arbitrary_network()
    model_config = config.ModelConfig(num_styles=1, alpha=0.25, generator="arbitrary")
    arbitrary_checkpoints.save_model(network, model_config, str(root / "model"))
    return {"network": network, "checkpoint": str(root / "model"), "config": model_config}


@pytest.fixture(scope="session")
def tiny_arbitrary_export(tiny_arbitrary, tmp_path_factory):
    """The version directory of `tiny_arbitrary`'s export (python -m magenta_style.export's
    code, --style_image_size=48). Only for tests marked slow (an export)."""
    from magenta_style.serving import export_lib

    root = tmp_path_factory.mktemp("tiny_arbitrary_export")
    version_dir, _ = export_lib.export_checkpoint(tiny_arbitrary["checkpoint"],
                                                  str(root / "export"), style_image_size=48)
    return version_dir
