"""Top-N ops table of a tf.profiler trace: where one inference call or training step goes.

    # Trace one call and print the table (ours or Magenta's TF1 graph):
    python tools/benchmarks/profile_ops.py --what=infer --size=512
    python tools/benchmarks/profile_ops.py --what=magenta_infer --size=512
    python tools/benchmarks/profile_ops.py --what=train --size=256 --batch_size=2 [--serial]
    python tools/benchmarks/profile_ops.py --what=magenta_train --size=256 --batch_size=2
    # Only read an existing trace (from TensorBoard's profiler or tf.profiler):
    python tools/benchmarks/profile_ops.py --logdir=/tmp/trace --top=20

The table sums the duration of every TF op event on the executor threads
(`name:type` TraceMe events; ThreadpoolListener and executor bookkeeping events are
left out), grouped by op type (`--group=type`) or by op name (`--group=name`).
Independent ops run concurrently on the executor's threads and then share the cores,
so each one's duration is inflated (a training step: 1.6 s of op time in 1.05 s of wall
time on 2 cores). `--serial` runs one op at a time (inter-op parallelism 1): the op
times then add up to the wall time, a little longer than the normal run's. The table
prints both totals. Percentages are of the op-time total.
"""
import argparse
import collections
import glob
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402


def op_times(logdir):
    """{(op name, op type): (total seconds, count)} over every TF op event in the trace."""
    paths = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))
    if not paths:
        raise FileNotFoundError(f"no *.xplane.pb under {logdir}")
    space = xplane_pb2.XSpace()
    with open(paths[-1], "rb") as f:
        space.ParseFromString(f.read())
    totals = collections.defaultdict(lambda: [0.0, 0])
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" not in name or "::" in name:  # Executor / threadpool bookkeeping.
                    continue
                op_name, op_type = name.rsplit(":", 1)
                if op_type != op_type.strip() or op_type.startswith("__"):
                    continue  # "EagerLocalExecute: __inference_...": the whole function.
                entry = totals[(op_name, op_type)]
                entry[0] += event.duration_ps * 1e-12
                entry[1] += 1
    return {k: tuple(v) for k, v in totals.items()}


def top_table(times, top=15, group="type", wall=None):
    """The table as a list of lines (markdown), grouped by op "type" or "name"."""
    grouped = collections.defaultdict(lambda: [0.0, 0])
    for (op_name, op_type), (seconds, count) in times.items():
        key = op_type if group == "type" else f"{op_name} ({op_type})"
        grouped[key][0] += seconds
        grouped[key][1] += count
    total = sum(s for s, _ in grouped.values()) or 1e-12
    lines = [f"| op {group} | ms | % | count |", "|---|---|---|---|"]
    for key, (seconds, count) in sorted(grouped.items(), key=lambda kv: -kv[1][0])[:top]:
        lines.append(f"| {key} | {1000 * seconds:.1f} | {100 * seconds / total:.1f} | {count} |")
    footer = f"op time total {1000 * total:.1f} ms"
    if wall is not None:
        footer += f", wall {1000 * wall:.1f} ms"
    return lines + ["", footer]


def trace(fn, logdir):
    """Runs fn() once under the profiler (after one untraced warm-up); returns wall s."""
    fn()
    tf.profiler.experimental.start(logdir)
    started = time.perf_counter()
    fn()
    wall = time.perf_counter() - started
    tf.profiler.experimental.stop()
    return wall


def _workload(what, size, batch, num_styles):
    rng = np.random.default_rng(0)
    images = rng.random((batch, size, size, 3), np.float32)
    labels = np.arange(batch, dtype=np.int32) % num_styles
    if what == "infer":
        from magenta_style import config as config_lib
        from magenta_style.networks import transformer
        model = transformer.build_transformer(config_lib.ModelConfig(num_styles=num_styles))
        weights = tf.one_hot(labels, num_styles)
        fn = tf.function(lambda x, w: model(x, w))
        return lambda: fn(tf.constant(images), weights).numpy()
    if what == "train":
        import benchmark_train
        step = benchmark_train.make_step("fp32", size, batch, num_styles, 1.0)
        return step
    import benchmark_magenta_tf1 as magenta
    if what == "magenta_infer":
        graph = magenta.InferenceGraph(num_styles)
        weights = np.eye(num_styles, dtype=np.float32)[labels]
        return lambda: graph.run(images, weights)
    if what == "magenta_train":
        graph = magenta.training_graph_for_benchmark(num_styles)
        return lambda: graph.step(images, labels)
    raise ValueError(f"--what must be infer, train, magenta_infer or magenta_train: {what}")


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--logdir", help="read this trace instead of making one")
    p.add_argument("--what", default="infer",
                   help="infer | train | magenta_infer | magenta_train")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--num_styles", type=int, default=4)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--group", default="type", choices=["type", "name"])
    p.add_argument("--serial", action="store_true",
                   help="one op at a time, so op times are not inflated by sharing cores")
    a = p.parse_args(argv[1:])
    if a.serial:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    wall = None
    logdir = a.logdir
    if not logdir:
        logdir = tempfile.mkdtemp(prefix=f"profile_{a.what}_")
        wall = trace(_workload(a.what, a.size, a.batch_size, a.num_styles), logdir)
        print(f"{a.what}: batch {a.batch_size}, {a.size} px, trace in {logdir}")
    print("\n".join(top_table(op_times(logdir), a.top, a.group, wall)))


if __name__ == "__main__":
    main(sys.argv)
