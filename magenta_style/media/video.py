"""Video stylization: decode, stylize in batches, re-encode; audio carried over unchanged.

Decoding and encoding use PyAV (`av` on PyPI), whose wheels bundle the FFmpeg
libraries: no system ffmpeg and no download at run time.

- Frames keep their timestamps (the output video stream gets the input's time base
  and each frame's pts), so the frame rate, variable frame rates and audio sync are
  those of the source.
- Every audio stream is remuxed packet by packet (stream copy): the audio bytes of
  the output are the input's, not re-encoded.
- Video is encoded as H.264 (libx264, yuv420p, CRF quality) for .mp4/.mov/.mkv and
  VP9 for .webm. yuv420p needs even sizes: an odd width or height is padded by one
  replicated row/column.
- The output is written to a temporary file beside the destination and renamed over
  it only when complete; any failure removes the temporary file.
- A file FFmpeg cannot open or decode raises VideoError with a one-line message.
"""
import dataclasses
import fractions
import os
import time

import av
import numpy as np

from magenta_style.media import fileio

# Output suffix -> (video encoder, pixel format).
_ENCODERS = {
    ".mp4": ("libx264", "yuv420p"),
    ".m4v": ("libx264", "yuv420p"),
    ".mov": ("libx264", "yuv420p"),
    ".mkv": ("libx264", "yuv420p"),
    ".webm": ("libvpx-vp9", "yuv420p"),
}
OUTPUT_SUFFIXES = tuple(_ENCODERS)

DEFAULT_CRF = 18


class VideoError(ValueError):
    """A video cannot be read or written; the message names the file (one line)."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What `probe` finds in a video file.

    Attributes:
      width, height: int, frame size in pixels.
      frame_rate: fractions.Fraction, the average frame rate (frames per second).
      frames: int, the frame count the container declares (0 when unknown).
      audio_streams: int, number of audio streams.
      video_codec: str, e.g. "h264".
    """

    width: int
    height: int
    frame_rate: fractions.Fraction
    frames: int
    audio_streams: int
    video_codec: str


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def _open_input(path):
    if not os.path.exists(path):
        raise VideoError(f"{path}: no such file")
    if os.path.isdir(path):
        raise VideoError(f"{path}: is a directory, not a video")
    try:
        container = av.open(path)
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise VideoError(f"{path}: not a video FFmpeg can read ({_one_line(e)})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    return container


def probe(path):
    """Reads a video's header.

    Args:
      path: str, the video file.

    Returns:
      VideoInfo.

    Raises:
      VideoError: missing, unreadable or without a video stream.
    """
    path = os.fspath(path)
    with _open_input(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or fractions.Fraction(0)
        return VideoInfo(width=stream.codec_context.width, height=stream.codec_context.height,
                         frame_rate=fractions.Fraction(rate), frames=int(stream.frames or 0),
                         audio_streams=len(container.streams.audio),
                         video_codec=stream.codec_context.name)


def _even(frame):
    """Pads [H, W, 3] uint8 to even H and W by repeating the last row/column."""
    height, width = frame.shape[:2]
    if height % 2 or width % 2:
        frame = np.pad(frame, [[0, height % 2], [0, width % 2], [0, 0]], mode="edge")
    return frame


def stylize_video(input_path, output_path, stylize_frames, batch_size=4, crf=DEFAULT_CRF,
                  max_frames=None, progress=None):
    """Stylizes every frame of a video and writes a new video with the original audio.

    Args:
      input_path: str, any container/codec FFmpeg decodes.
      output_path: str ending in one of OUTPUT_SUFFIXES; its directory must exist.
      stylize_frames: callable(float32 [B, H, W, 3] in [0, 1]) -> float32 [B, H, W, 3]
        in [0, 1], e.g. from `stylizer.make_frame_stylizer`.
      batch_size: int >= 1, frames stylized per call.
      crf: int, the encoder's constant-rate quality (0 best .. 51 worst for H.264,
        0..63 for VP9).
      max_frames: optional int; stop after this many frames (audio is cut to match).
      progress: optional callable(frames_done, frames_total, frames_per_second);
        frames_total is 0 when the container does not say.

    Returns:
      int, the number of frames written.

    Raises:
      VideoError: unreadable input, undecodable frames, an unknown output suffix, or
        an audio codec the output container cannot hold. The output is untouched.
    """
    input_path, output_path = os.fspath(input_path), os.fspath(output_path)
    suffix = os.path.splitext(output_path)[1].lower()
    if suffix not in _ENCODERS:
        raise VideoError(f"{output_path}: unknown output format {suffix!r}; use one of "
                         f"{', '.join(OUTPUT_SUFFIXES)}")
    if batch_size < 1:
        raise VideoError(f"batch_size must be >= 1, got {batch_size}")
    if fileio.is_same_file(input_path, output_path):
        raise VideoError(f"{output_path} is the input video {input_path}; write the output "
                         "to another file")
    out_dir = os.path.dirname(os.path.abspath(output_path))
    if not os.path.isdir(out_dir):
        raise VideoError(f"{output_path}: directory {out_dir} does not exist")
    encoder, pix_fmt = _ENCODERS[suffix]
    source = _open_input(input_path)
    try:
        with fileio.atomic_output(output_path) as tmp:
            return _transcode(source, input_path, tmp, encoder, pix_fmt, stylize_frames,
                              batch_size, crf, max_frames, progress)
    except av.FFmpegError as e:
        raise VideoError(f"{input_path}: {_one_line(e)}") from None
    finally:
        source.close()


def _transcode(source, input_path, tmp, encoder, pix_fmt, stylize_frames, batch_size, crf,
               max_frames, progress):
    in_video = source.streams.video[0]
    in_audio = list(source.streams.audio)
    total = int(in_video.frames or 0)
    if max_frames is not None:
        total = min(total, max_frames) if total else max_frames
    rate = in_video.average_rate or in_video.guessed_rate or fractions.Fraction(25)
    width = in_video.codec_context.width
    height = in_video.codec_context.height
    with av.open(tmp, "w") as sink:
        out_video = sink.add_stream(encoder, rate=rate)
        out_video.width = width + width % 2
        out_video.height = height + height % 2
        out_video.pix_fmt = pix_fmt
        out_video.time_base = in_video.time_base
        out_video.options = {"crf": str(int(crf))}
        if encoder == "libvpx-vp9":
            out_video.options = {"crf": str(int(crf)), "b": "0"}
        audio_map = {}
        for stream in in_audio:
            try:
                audio_map[stream.index] = sink.add_stream_from_template(stream)
            except (av.FFmpegError, ValueError) as e:
                raise VideoError(f"{input_path}: its {stream.codec_context.name} audio cannot "
                                 f"be copied into {os.path.splitext(tmp)[1]} ({_one_line(e)})"
                                 ) from None
        stop_pts = None  # Audio after the last written frame is dropped with max_frames.
        pending, done, start = [], 0, time.monotonic()

        def flush():
            nonlocal done
            frames = np.stack([f.to_ndarray(format="rgb24") for f in pending])
            stylized = stylize_frames(frames.astype(np.float32) / 255.0)
            pixels = np.round(np.clip(stylized, 0.0, 1.0) * 255.0).astype(np.uint8)
            for frame, source_frame in zip(pixels, pending):
                out = av.VideoFrame.from_ndarray(_even(frame), format="rgb24")
                out.pts = source_frame.pts
                out.time_base = in_video.time_base
                for packet in out_video.encode(out):
                    sink.mux(packet)
            done += len(pending)
            pending.clear()
            if progress is not None:
                progress(done, total, done / max(time.monotonic() - start, 1e-9))

        for packet in source.demux(in_video, *in_audio):
            if packet.stream.type == "audio":
                if packet.dts is None:
                    continue  # Demuxer flush packets carry no data.
                if stop_pts is not None and packet.pts is not None and (
                        packet.pts * packet.time_base >= stop_pts):
                    continue
                packet.stream = audio_map[packet.stream.index]
                sink.mux(packet)
                continue
            if max_frames is not None and done + len(pending) >= max_frames:
                continue
            try:
                frames = packet.decode()
            except av.FFmpegError as e:
                raise VideoError(f"{input_path}: cannot decode a video frame "
                                 f"({_one_line(e)})") from None
            for frame in frames:
                if max_frames is not None and done + len(pending) >= max_frames:
                    stop_pts = frame.pts * frame.time_base
                    break
                pending.append(frame)
                if len(pending) == batch_size:
                    flush()
        if pending:
            flush()
        if done == 0:
            raise VideoError(f"{input_path}: no video frames could be decoded")
        for packet in out_video.encode(None):
            sink.mux(packet)
    return done


def panning_clip(canvas, frames, size, shift=(0, 1), noise_stddev=0.0, seed=0):
    """A synthetic clip whose true motion is known: a window panning over a still canvas.

    Frame t is `canvas[t*dy : t*dy + h, t*dx : t*dx + w]` plus optional Gaussian
    "sensor" noise, so frame t+1 at (y, x) shows what frame t showed at (y+dy, x+dx).

    Args:
      canvas: float32 [Hc, Wc, 3] in [0, 1], large enough for the pan.
      frames: int >= 2.
      size: (h, w) of each frame.
      shift: (dy, dx) non-negative ints, pixels per frame.
      noise_stddev: float >= 0, independent per-frame noise ([0, 1] units), clipped.
      seed: int, seeds the noise.

    Returns:
      float32 [frames, h, w, 3] in [0, 1].

    Raises:
      ValueError: the canvas is too small for the pan.
    """
    (h, w), (dy, dx) = size, shift
    need = (h + dy * (frames - 1), w + dx * (frames - 1))
    if canvas.shape[0] < need[0] or canvas.shape[1] < need[1]:
        raise ValueError(f"canvas {canvas.shape[:2]} is too small for this pan; need {need}")
    clip = np.stack([canvas[t * dy:t * dy + h, t * dx:t * dx + w] for t in range(frames)])
    if noise_stddev > 0:
        noise = np.random.default_rng(seed).normal(0.0, noise_stddev, clip.shape)
        clip = np.clip(clip + noise, 0.0, 1.0)
    return clip.astype(np.float32)


def warping_error(frames, shift, margin=0):
    """Mean absolute difference between frame t+1 and frame t moved by the known motion.

    Args:
      frames: float [T, h, w, C], T >= 2, e.g. stylized frames of `panning_clip`.
      shift: (dy, dx), the pan of `panning_clip` (pixels per frame).
      margin: int >= 0, pixels left out at every border of the compared region (where
        new content enters and the network's border padding acts).

    Returns:
      float, in the frames' units (0 for a perfectly stable result).
    """
    frames = np.asarray(frames, np.float32)
    (dy, dx), (h, w) = shift, frames.shape[1:3]
    later = frames[1:, :h - dy, :w - dx]
    moved = frames[:-1, dy:, dx:]
    if margin:
        later = later[:, margin:-margin, margin:-margin]
        moved = moved[:, margin:-margin, margin:-margin]
    if later.size == 0:
        raise ValueError("margin and shift leave nothing to compare")
    return float(np.mean(np.abs(later - moved)))


def temporal_difference(frames):
    """Mean absolute difference of consecutive frames (no motion compensation): float."""
    frames = np.asarray(frames, np.float32)
    return float(np.mean(np.abs(frames[1:] - frames[:-1])))
