r"""Frames per second of the web demo's webcam mode, measured in the page.

    python tools/benchmarks/benchmark_demo.py --checkpoints=/tmp/magenta_style_quickstart/train \
        --dtypes=float32,bfloat16 --sizes=256,384 --seconds=15

For each model and compute dtype it starts `python -m magenta_style.demo`, opens the page
in headless Chromium (Debian's, through Playwright) with Chromium's fake webcam, starts
the stream, and for each frame size counts the stylized frames the page shows in
`--seconds` (after `--warmup` seconds). It also reads the model's time per frame that
the page prints with each frame (the server's LiveStylizer time of the model call) and
reports its median. Prints one Markdown table row per model, dtype and size, with the
machine's load average before and after.

`--model_only` skips the browser: it times the model call alone (LiveStylizer, the demo's
call) on webcam-shaped frames (4:3), median of `--repeats` calls after one warm-up.

Needs `pip install -e ".[demo,test]"` and `apt-get install chromium` (not for --model_only).
"""
import argparse
import os
import pathlib
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))  # Run as a script from anywhere.
CHROMIUM_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(checkpoint, dtype, log_path, timeout=600):
    port = _free_port()
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "magenta_style.demo", f"--checkpoint={checkpoint}",
         f"--port={port}", f"--compute_dtype={dtype}"],
        cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        match = re.search(r"open (http://\S+) ", pathlib.Path(log_path).read_text())
        if match:
            return process, match.group(1)
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"the demo did not start: {pathlib.Path(log_path).read_text()[-2000:]}")


def _measure(page, size, warmup, seconds):
    """(page fps, median model ms, frame size text) at one webcam size."""
    page.locator("#webcam-size").get_by_text(str(size), exact=True).click()
    time.sleep(warmup)
    frames, model_ms = set(), []
    last_text = None
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        src, text = page.evaluate(
            "() => [document.querySelector('#live img')?.src,"
            " document.querySelector('#fps').innerText]")
        if src and src not in frames:
            frames.add(src)
            if text != last_text:
                match = re.search(r"model (\d+) ms per frame · (\d+x\d+)", text)
                if match:
                    model_ms.append(int(match.group(1)))
                last_text = text
        time.sleep(0.005)
    elapsed = time.monotonic() - start
    shape = re.search(r"(\d+x\d+)", last_text or "")
    return (len(frames) / elapsed, statistics.median(model_ms) if model_ms else float("nan"),
            shape.group(1) if shape else "?")


def _model_only(checkpoints, dtypes, sizes, repeats):
    import numpy as np  # pylint: disable=import-outside-toplevel
    from magenta_style.inference import live  # pylint: disable=import-outside-toplevel
    from magenta_style.inference import stylizer  # pylint: disable=import-outside-toplevel

    print("| model | dtype | frame | model ms/frame (median) |")
    print("|---|---|---|---|", flush=True)
    for checkpoint in checkpoints:
        for dtype in dtypes:
            model, model_config = stylizer.load(checkpoint)
            runner = live.LiveStylizer(transformer.with_compute_dtype(model, dtype), model_config)
            options = stylizer.StylizeOptions(styles="0")
            for size in sizes:
                frame = np.random.default_rng(0).uniform(
                    0, 1, [size * 3 // 4, size, 3]).astype(np.float32)
                runner(frame, options)  # Trace.
                times = [runner(frame, options).seconds for _ in range(repeats)]
                print(f"| {checkpoint} | {dtype} | {size}x{size * 3 // 4} | "
                      f"{1000 * statistics.median(times):.0f} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", required=True, help="Comma-separated models.")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--sizes", default="256,384")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--model_only", action="store_true")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    if args.model_only:
        print(f"load before: {os.getloadavg()}", flush=True)
        _model_only(args.checkpoints.split(","), args.dtypes.split(","),
                    [int(s) for s in args.sizes.split(",")], args.repeats)
        print(f"load after: {os.getloadavg()}", flush=True)
        return
    from playwright.sync_api import sync_playwright  # pylint: disable=import-outside-toplevel

    print(f"load before: {os.getloadavg()}", flush=True)
    print("| model | dtype | frame | page fps | model ms/frame (median) |")
    print("|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium,
                                             args=CHROMIUM_ARGS)
        for checkpoint in args.checkpoints.split(","):
            for dtype in args.dtypes.split(","):
                process, url = _start_server(checkpoint, dtype, os.path.join(tmp, "log"))
                try:
                    context = browser.new_context(viewport={"width": 1300, "height": 1000},
                                                  permissions=["camera"])
                    page = context.new_page()
                    page.goto(url)
                    page.wait_for_selector("#style-0", timeout=120_000)
                    page.get_by_role("tab", name="Webcam live").click()
                    page.click("#camera button:has-text('Click to Access Webcam')")
                    page.click("#camera button[aria-label='capture photo']", timeout=120_000)
                    page.wait_for_function(
                        "() => /frames\\/s/.test(document.querySelector('#fps').innerText)",
                        timeout=120_000)
                    for size in args.sizes.split(","):
                        fps, model_ms, shape = _measure(page, int(size), args.warmup,
                                                        args.seconds)
                        print(f"| {checkpoint} | {dtype} | {shape} | {fps:.1f} | "
                              f"{model_ms:.0f} |", flush=True)
                    context.close()
                finally:
                    process.terminate()
                    process.wait(timeout=60)
        browser.close()
    print(f"load after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
