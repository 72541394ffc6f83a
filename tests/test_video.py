"""Tests for magenta_style.media.video and the stylize_video CLI on clips made here with PyAV."""
import fractions
import os
import subprocess
import sys

import av
import numpy as np
import pytest
import tensorflow as tf

from magenta_style import config
from magenta_style.inference import stylizer
from magenta_style.media import video
from magenta_style.networks import checkpoints
from magenta_style.networks import transformer

# Every test here uses video files and the stylize_video command.
pytestmark = pytest.mark.slow

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_clip(path, frames=8, size=(32, 32), fps=12, audio=True):
    """Writes a small H.264 clip of a moving gradient, with a 440 Hz AAC track."""
    height, width = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if audio:
            sound = out.add_stream("aac", rate=8000)
        y, x = np.mgrid[:height, :width]
        for i in range(frames):
            rgb = np.stack([(x * 8 + i * 16) % 256, y * 8 % 256, np.full_like(x, 128)], -1)
            frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if audio:
            t = np.arange(8000 * frames // fps) / 8000
            samples = np.repeat((0.3 * np.sin(2 * np.pi * 440 * t))[None], 2, 0)
            for start in range(0, samples.shape[1], 1024):
                chunk = np.ascontiguousarray(samples[:, start:start + 1024], np.float32)
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = 8000, start
                for packet in sound.encode(frame):
                    out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
    return path


def _audio_packets(path):
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def _frames(path):
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


def test_identity_transcode_keeps_frames_rate_and_audio(clip, tmp_path):
    out = tmp_path / "out.mp4"
    seen = []
    written = video.stylize_video(clip, out, lambda f: f, batch_size=3, crf=0,
                                  progress=lambda d, t, fps: seen.append((d, t)))
    assert written == 8
    assert seen[-1] == (8, 8) and [d for d, _ in seen] == [3, 6, 8]
    info, source = video.probe(out), video.probe(clip)
    assert (info.width, info.height, info.frames) == (32, 32, 8)
    assert info.frame_rate == source.frame_rate == fractions.Fraction(12)
    assert info.audio_streams == 1
    assert _audio_packets(out) == _audio_packets(clip)
    # Nearly lossless (crf 0, but two yuv420p <-> RGB conversions).
    for a, b in zip(_frames(out), _frames(clip)):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 3


def test_frames_reach_the_stylizer_in_order(clip, tmp_path):
    batches = []

    def invert(frames):
        batches.append(frames.shape)
        assert frames.dtype == np.float32 and 0 <= frames.min() and frames.max() <= 1
        return 1.0 - frames

    video.stylize_video(clip, tmp_path / "inv.mkv", invert, batch_size=5, crf=0)
    assert batches == [(5, 32, 32, 3), (3, 32, 32, 3)]
    inverted = _frames(tmp_path / "inv.mkv")
    original = _frames(clip)
    assert len(inverted) == 8
    for a, b in zip(inverted, original):
        assert np.abs(a.astype(int) - (255 - b.astype(int))).mean() < 3


def test_odd_sizes_and_no_audio(tmp_path):
    clip = make_clip(tmp_path / "odd.mp4", frames=3, size=(18, 22), audio=False)
    # libx264 only makes even sizes, so shrink through the stylizer instead.
    out = tmp_path / "out.mp4"
    video.stylize_video(clip, out, lambda f: f[:, :17, :21], batch_size=2)
    info = video.probe(out)
    assert (info.width, info.height, info.frames, info.audio_streams) == (22, 18, 3, 0)


def test_max_frames(clip, tmp_path):
    assert video.stylize_video(clip, tmp_path / "short.mp4", lambda f: f, max_frames=5) == 5
    assert video.probe(tmp_path / "short.mp4").frames == 5


@pytest.mark.parametrize("content,message", [
    (b"", "not a video FFmpeg can read"),
    (b"\x00\x01garbage" * 100, "not a video FFmpeg can read"),
])
def test_broken_input_is_a_one_line_error_and_writes_nothing(tmp_path, content, message):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    out = tmp_path / "out.mp4"
    with pytest.raises(video.VideoError, match=message) as info:
        video.stylize_video(bad, out, lambda f: f)
    assert "\n" not in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["bad.mp4"]


def test_failure_midway_leaves_no_output(clip, tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous")

    def fail(frames):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        video.stylize_video(clip, out, fail)
    assert out.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["out.mp4"]


def test_unknown_suffix_and_missing_file(clip, tmp_path):
    with pytest.raises(video.VideoError, match="unknown output format '.avi'"):
        video.stylize_video(clip, tmp_path / "out.avi", lambda f: f)
    with pytest.raises(video.VideoError, match="no such file"):
        video.stylize_video(tmp_path / "missing.mp4", tmp_path / "out.mp4", lambda f: f)


def test_frame_stylizer_matches_the_network():
    model = transformer.build_transformer(config.ModelConfig(2, 0.25))
    frames = tf.random.stateless_uniform([3, 16, 20, 3], seed=[3, 4]).numpy()
    row = np.array([0.0, 1.0], np.float32)
    stylize_frames = stylizer.make_frame_stylizer(model, row, strength=0.5)
    expected = model(frames, tf.constant([1, 1, 1]), tf.constant([0.5] * 3)).numpy()
    np.testing.assert_allclose(stylize_frames(frames), expected, atol=1e-6)
    colors = stylizer.make_frame_stylizer(model, row, preserve_colors=True)(frames)
    chroma = lambda x: tf.image.rgb_to_yuv(x).numpy()[..., 1:]
    # Chroma follows the input except where clipping to [0, 1] bites.
    assert np.median(np.abs(chroma(colors) - chroma(frames))) < 1e-3


def test_cli_end_to_end(clip, tmp_path):
    model = transformer.build_transformer(config.ModelConfig(2, 0.25))
    checkpoints.save_model(model, config.ModelConfig(2, 0.25), str(tmp_path / "model"))
    out = tmp_path / "styled.mp4"
    command = [sys.executable, "-m", "magenta_style.stylize_video",
               f"--checkpoint={tmp_path / 'model'}", f"--input={clip}", f"--output={out}",
               "--which_styles={0:0.5,1:0.5}", "--strength=0.8", "--preserve_colors",
               "--batch_size=4"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "frames/s" in result.stderr
    assert video.probe(out).frames == 8
    assert _audio_packets(out) == _audio_packets(clip)

    bad = subprocess.run(command[:4] + [f"--input={tmp_path / 'missing.mp4'}",
                                        f"--output={tmp_path / 'x.mp4'}", "--which_styles=0"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert "missing.mp4: no such file" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_cli_style_map_and_which_styles_together_is_a_usage_error(clip, tmp_path):
    mask = tmp_path / "mask.png"
    from PIL import Image
    Image.new("L", (8, 8), 255).save(mask)
    result = subprocess.run(
        [sys.executable, "-m", "magenta_style.stylize_video", f"--checkpoint={tmp_path}",
         f"--input={clip}", f"--output={tmp_path / 'o.mp4'}", "--which_styles=1",
         f"--style_map={mask}", "--style_map_colors=0:0,255:1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "--style_map replaces --which_styles" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "o.mp4").exists()


def test_output_that_is_the_input_is_refused(clip, tmp_path):
    """The same path, a `..` detour, a symlink and a hard link: the source is never touched."""
    source = tmp_path / "source.mp4"
    source.write_bytes(open(clip, "rb").read())
    before = source.read_bytes()
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.mp4").symlink_to(source)
    os.link(source, tmp_path / "hard.mp4")
    for output in (source, tmp_path / "sub" / ".." / "source.mp4", tmp_path / "link.mp4",
                   tmp_path / "hard.mp4"):
        with pytest.raises(video.VideoError, match="is the input video"):
            video.stylize_video(source, output, lambda f: 1.0 - f)
    assert source.read_bytes() == before
    result = subprocess.run(
        [sys.executable, "-m", "magenta_style.stylize_video", f"--checkpoint={tmp_path}",
         f"--input={source}", f"--output={tmp_path / 'hard.mp4'}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "is the --input video" in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr and source.read_bytes() == before


def _video_job(checkpoint, clip, output, batch_size):
    from magenta_style import stylize_video
    from magenta_style.inference import style_spec
    return stylize_video.VideoJob(
        checkpoint=str(checkpoint), input=str(clip), output=str(output),
        which_styles=style_spec.parse("0"), strength=1.0, preserve_colors=False,
        style_map="", style_map_colors=None, style_map_blur=0.0, batch_size=batch_size,
        crf=18, max_frames=None)


def test_batches_fit_the_exports_pixel_cap_and_oversized_frames_are_refused_up_front(
        clip, tmp_path, capfd):
    """An export capped at 2500 pixels: a 32 x 32 clip (1024 pixels a frame) goes in
    batches of 2, a 64 x 64 one (4096 pixels) is refused before anything is written."""
    from magenta_style import stylize_video
    from magenta_style.media import limits
    from magenta_style.serving import export_lib

    model_config = config.ModelConfig(2, 0.25)
    model = transformer.build_transformer(model_config)
    export = export_lib.export_saved_model(
        model, model_config, str(tmp_path / "cap2500"), warmup_size=0,
        memory_budget_bytes=2500 * limits.bytes_per_pixel(model_config))
    assert stylizer.load(export)[0].max_pixels == 2500

    # --batch_size=4 would be 4096 pixels a call, which the export's graph refuses.
    out = tmp_path / "fits.mp4"
    assert stylize_video.run(_video_job(export, clip, out, batch_size=4)) == 8
    assert "--batch_size=4 lowered to 2" in capfd.readouterr().err
    assert video.probe(out).frames == 8

    large = make_clip(tmp_path / "large.mp4", frames=2, size=(64, 64), audio=False)
    refused = tmp_path / "refused.mp4"
    with pytest.raises(video.VideoError,
                       match=r"frames of 64x64 are over this export's cap of 2500 pixels"):
        stylize_video.run(_video_job(export, large, refused, batch_size=1))
    assert not refused.exists() and not list(tmp_path.glob("*refused*"))


def test_arbitrary_model_style_is_predicted_once_per_video(clip, tmp_path, tiny_arbitrary,
                                                           tiny_arbitrary_export, capfd):
    """--style_images, --style_mix, --style_image_size and Magenta --strength for a video
    (the frame stylizer on the checkpoint's network, the command on its export): one style
    for every frame, from the style images' bottlenecks and the first frame's content
    bottleneck, each predicted once."""
    from PIL import Image

    from magenta_style import stylize_video
    from magenta_style.inference import style_images
    from magenta_style.networks import arbitrary

    rng = np.random.default_rng(8)
    for name in ("starry", "wave"):
        Image.fromarray(rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)).save(
            tmp_path / f"{name}.png")
    starry, wave = str(tmp_path / "starry.png"), str(tmp_path / "wave.png")
    network = tiny_arbitrary["network"]
    model, model_config = style_images.bind(network, tiny_arbitrary["config"], [starry, wave],
                                            48)
    frames = np.stack([f.astype(np.float32) / 255.0 for f in _frames(clip)])
    stylize_frames = stylizer.make_frame_stylizer(model, [0.25, 0.75], strength=0.5)
    got = np.concatenate([stylize_frames(frames[:3]), stylize_frames(frames[3:])])
    style_bn = 0.25 * model.bottlenecks[:1] + 0.75 * model.bottlenecks[1:]
    first_bn = network.predict_style(arbitrary.prepare_style_image(frames[:1], 48))
    expected = network.transfer(frames, tf.repeat(
        arbitrary.mix_with_content(style_bn, first_bn, 0.5), len(frames), axis=0)).numpy()
    np.testing.assert_allclose(got, expected, atol=2e-5)
    # Frame 7 fed as its own style would give another picture: the first frame's is kept.
    own_bn = network.predict_style(arbitrary.prepare_style_image(frames[7:], 48))
    own = network.transfer(frames[7:], arbitrary.mix_with_content(style_bn, own_bn, 0.5))
    assert np.abs(own.numpy()[0] - got[7]).max() > 1e-3

    # The expected frames through the same encoder: what the command must write.
    reference = tmp_path / "reference.mp4"
    pending = list(expected)
    video.stylize_video(clip, reference, lambda f: np.stack([pending.pop(0) for _ in f]),
                        batch_size=3, crf=0)
    reference_frames = np.stack(_frames(reference)).astype(np.float32)
    argv = [f"--input={clip}", f"--style_images={starry},{wave}", "--style_mix=1,3",
            "--style_image_size=48", "--strength=0.5", "--batch_size=3", "--crf=0"]
    # The command, on the export (the checkpoint's network is the one checked above; the
    # command's code is the same for both, stylizer.load and cli.bind_style_images).
    out = tmp_path / "styled.mp4"
    assert stylize_video.main(["stylize_video", f"--checkpoint={tiny_arbitrary_export}",
                               f"--output={out}"] + argv) == 0, capfd.readouterr().err
    written = np.stack(_frames(out)).astype(np.float32)
    assert written.shape == reference_frames.shape == (8, 32, 32, 3)
    diff = np.abs(written - reference_frames)  # Grey levels.
    assert diff.mean() < 0.05 and diff.max() <= 2, (diff.mean(), diff.max())
    assert _audio_packets(out) == _audio_packets(clip)
    capfd.readouterr()
    for flags, message in (([f"--style_images={starry},{wave}"],
                            "holds 2 images; a video takes one, or several mixed by"),
                           (["--which_styles=1"], "whose styles are images")):
        code = stylize_video.main(["stylize_video", f"--checkpoint={tiny_arbitrary_export}",
                                   f"--input={clip}", f"--output={tmp_path / 'no.mp4'}"] + flags)
        err = capfd.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "no.mp4").exists()
