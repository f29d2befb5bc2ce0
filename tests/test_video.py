"""Video decoding, frame sampling and mp4 writing, on real clips and on clips written here."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from synvita.data.video import FrameSampler, VideoError, probe_video, read_video, write_video

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (30, 120, 200), (0, 0, 0), (200, 200, 40), (90, 10, 160)]
# H.264 at crf 12 with yuv420p chroma: a solid colour comes back within a few levels.
TOL = 6


def solid_frames(colours, h=48, w=64):
    return np.stack([np.full((h, w, 3), c, np.uint8) for c in colours])


def frame_colours(video):
    return video.reshape(len(video), -1, 3).mean(axis=1)


def assert_colours(video, expected):
    assert video.shape[0] == len(expected)
    np.testing.assert_allclose(frame_colours(video), np.array(expected, float), atol=TOL)


@pytest.fixture(scope="module")
def colour_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "colours.mp4"
    write_video(path, solid_frames(COLOURS), fps=8)
    return path


def reference_decode(path):
    """Every frame and its start time in seconds, through PyAV's plain container.decode()."""
    with av.open(str(path)) as c:
        frames = [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    frames.sort(key=lambda x: x[0])
    return [t for t, _ in frames], [f for _, f in frames]


# --- clips written by the tests -------------------------------------------------------------

def test_written_clip_round_trips_colours_and_metadata(colour_clip):
    assert_colours(read_video(colour_clip, FrameSampler("all")), COLOURS)
    info = probe_video(colour_clip)
    assert (info.num_frames, info.width, info.height) == (8, 64, 48)
    assert info.fps == pytest.approx(8.0)
    assert info.duration == pytest.approx(1.0)
    assert sorted(p.name for p in colour_clip.parent.iterdir()) == ["colours.mp4"]  # no temp files left


def test_uniform_picks_evenly_spaced_frames(colour_clip):
    # round(linspace(0, 7, 4)) = 0, 2.33->2, 4.67->5, 7
    assert_colours(read_video(colour_clip, FrameSampler("uniform", 4)), [COLOURS[i] for i in (0, 2, 5, 7)])


def test_uniform_on_a_clip_shorter_than_k_repeats_frames(tmp_path):
    path = tmp_path / "short.mp4"
    write_video(path, solid_frames(COLOURS[:3]), fps=4)
    video = read_video(path, FrameSampler("uniform", 8))
    # round(linspace(0, 2, 8)) = 0, 0, 1, 1, 1, 1, 2, 2
    assert_colours(video, [COLOURS[i] for i in (0, 0, 1, 1, 1, 1, 2, 2)])


def test_fps_sampler_on_constant_rate_clip(colour_clip):
    assert_colours(read_video(colour_clip, FrameSampler("fps", fps=2)), [COLOURS[0], COLOURS[4]])
    # Above the native rate every frame is shown twice.
    assert_colours(read_video(colour_clip, FrameSampler("fps", fps=16)), [c for c in COLOURS for _ in (0, 1)])


def test_fps_sampler_follows_timestamps_of_a_variable_rate_clip(tmp_path):
    path = tmp_path / "vfr.mp4"
    starts = [0.0, 0.1, 0.5, 0.6, 1.5]  # seconds; the muxer gives the last frame one tick, to 1.6
    with av.open(str(path), "w") as c:
        stream = c.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 10)
        for start, frame in zip(starts, solid_frames(COLOURS[:5])):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = round(start * 10), Fraction(1, 10)
            c.mux(stream.encode(vf))
        c.mux(stream.encode(None))
    times, _ = reference_decode(path)
    assert times == pytest.approx(starts)
    # At 2 fps the clock reads 0, 0.5, 1.0, 1.5: frames 0, 2, 3 (shown from 0.6 to 1.5), 4.
    assert_colours(read_video(path, FrameSampler("fps", fps=2)), [COLOURS[i] for i in (0, 2, 3, 4)])
    # Uniform works on frame indices whatever the timing: round(linspace(0, 4, 3)) = 0, 2, 4.
    assert_colours(read_video(path, FrameSampler("uniform", 3)), [COLOURS[i] for i in (0, 2, 4)])
    assert probe_video(path).duration == pytest.approx(1.6)


def test_write_video_rejects_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="even width and height"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 33, 64, 3), np.uint8), fps=8)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "float.mp4", np.zeros((2, 32, 64, 3), np.float32), fps=8)
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "fps.mp4", np.zeros((2, 32, 64, 3), np.uint8), fps=0)
    assert list(tmp_path.iterdir()) == []


def test_lossless_clips_decode_to_the_same_pixels_on_every_encoding(tmp_path):
    """crf 0 codes yuv420p losslessly, so however libx264 decides, the pixels come back the same:
    at crf 12 some of these clips came back differently from one encoding to the next."""
    from synvita.toyworld.render import REAL, render
    from synvita.toyworld.world import random_scene

    for i in range(24):
        clip = render(random_scene(i), REAL, i, 8, 48)
        decoded = []
        for k in range(4):
            write_video(tmp_path / f"{i}-{k}.mp4", clip, fps=8, crf=0)
            decoded.append(read_video(tmp_path / f"{i}-{k}.mp4", FrameSampler("all")))
        assert all(np.array_equal(decoded[0], d) for d in decoded[1:]), i
        assert np.abs(decoded[0].astype(int) - clip).mean() < 10  # only the chroma subsampling's loss


def test_sampler_validation_and_description():
    assert FrameSampler().describe() == "uniform-8"
    assert FrameSampler("fps", fps=2).describe() == "fps-2"
    assert FrameSampler("all").describe() == "all"
    for bad in (dict(kind="fps"), dict(kind="uniform", num_frames=0), dict(kind="all", fps=1.0), dict(kind="every")):
        with pytest.raises(ValueError, match="FrameSampler"):
            FrameSampler(**bad)


# --- unusable files -------------------------------------------------------------------------

@pytest.mark.parametrize("content, problem", [
    (None, "does not exist"),
    (b"", "empty"),
    (b"not a video at all " * 100, "not a readable video"),
])
def test_unusable_files_name_the_file_and_the_problem(tmp_path, content, problem):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    for call in (read_video, probe_video):
        with pytest.raises(VideoError, match=problem) as err:
            call(path)
        assert str(err.value).startswith(f"{path}: ")


def test_truncated_clip_is_an_error(colour_clip, tmp_path):
    path = tmp_path / "cut.mp4"
    path.write_bytes(colour_clip.read_bytes()[: colour_clip.stat().st_size // 2])
    with pytest.raises(VideoError) as err:
        read_video(path)
    assert str(err.value).startswith(f"{path}: ")


# --- real clips -----------------------------------------------------------------------------

def real_clips(shared):
    clips = sorted((shared / "videos").glob("*.mp4")) + sorted((shared / "synvita-samples").glob("*/*.mp4"))
    assert len(clips) == 14
    return clips


def test_real_clips_metadata(shared_data):
    # Known facts of these files: a 10 s VaTeX clip at 30000/1001 fps, CogVideoX's 49 frames
    # at 8 fps, LaVie and VideoCrafter2 at 32 frames.
    expected = {
        "videos/vatex_y5xuvHpDPZQ_000005_000015.mp4": (300, 1280, 720, 30000 / 1001),
        "synvita-samples/cogvideox/msr-vtt_video6323_001.mp4": (49, 720, 480, 8.0),
        "synvita-samples/lavie/msr-vtt_video6323_001.mp4": (32, 512, 320, 8.0),
        "synvita-samples/videocrafter2/vatex_dXx58z-yq2g_000003_000013_001.mp4": (32, 512, 320, 8.0),
    }
    for rel, (n, w, h, fps) in expected.items():
        info = probe_video(shared_data / rel)
        assert (info.num_frames, info.width, info.height) == (n, w, h), rel
        assert info.fps == pytest.approx(fps, rel=1e-6), rel
        assert info.duration == pytest.approx(n / fps, rel=1e-6), rel


def test_real_clips_decode_like_the_reference(shared_data):
    for path in real_clips(shared_data):
        if path.stat().st_size > 2_000_000:
            continue  # the large clips are covered by the metadata and sampling tests
        times, frames = reference_decode(path)
        assert probe_video(path).num_frames == len(frames), path
        uniform = read_video(path, FrameSampler("uniform", 4))
        want = np.round(np.linspace(0, len(frames) - 1, 4)).astype(int)
        np.testing.assert_array_equal(uniform, np.stack([frames[i] for i in want]), err_msg=str(path))
        assert uniform.dtype == np.uint8 and uniform.shape[-1] == 3


def test_real_clip_sampled_by_time(shared_data):
    path = shared_data / "videos" / "videollava_sample_demo_22.mp4"
    times, frames = reference_decode(path)
    video = read_video(path, FrameSampler("fps", fps=1))
    info = probe_video(path)
    clock = times[0] + np.arange(int(np.ceil(info.duration)))
    want = [max(i for i, t in enumerate(times) if t <= c + 1e-6) for c in clock]
    np.testing.assert_array_equal(video, np.stack([frames[i] for i in want]))
    assert len(read_video(path, FrameSampler("all"))) == len(frames) == 1090


def test_truncated_real_clip_reports_truncation(shared_data, tmp_path):
    data = (shared_data / "videos" / "videollava_sample_demo_3.mp4").read_bytes()
    path = tmp_path / "half.mp4"
    path.write_bytes(data[: len(data) // 2])  # this file keeps its index at the front
    with pytest.raises(VideoError, match=r"truncated: the index lists 146 frames"):
        read_video(path)
