"""VideoCon CSV importers, video path resolution, and `synvita data download` (no network used)."""

from __future__ import annotations

import csv
import functools
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from synvita.cli import main as cli_main
from synvita.data.records import MISALIGNMENTS, FieldError, ManifestError
from synvita.data.video import FrameSampler, read_video
from synvita.data.videocon import (
    MISALIGNMENT_ALIASES, normalise_misalignment, read_human_csv, read_llm_csv, resolve_video,
)

LLM_HEADER = ["source", "videopath", "caption", "neg_caption", "split", "misalignment", "youtube_key"]


def write_csv(path: Path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_aliases_cover_exactly_the_misalignments():
    assert set(MISALIGNMENT_ALIASES.values()) == set(MISALIGNMENTS)
    assert [normalise_misalignment(n) for n in ("Counting", "event order flip", "Event_Order_Flipping",
                                                "spatial relation", "HALLUCINATION", "object")] == \
        ["count", "flip", "flip", "relation", "hallucination", "object"]
    with pytest.raises(FieldError, match="'negation' is not a known VideoCon misalignment"):
        normalise_misalignment("negation")


def test_llm_entailment_csv(tmp_path):
    root = tmp_path / "videos"
    path = write_csv(tmp_path / "llm.csv", LLM_HEADER, [
        ["MSR-VTT", "msrvtt/video6323.mp4", "a man talks about tacos", "a man talks about two tacos", "train", "counting", "abc"],
        ["MSR-VTT", "msrvtt/video6323.mp4", "a man talks about tacos", "a woman, then a man, talks", "Val", "event order flip", "abc"],
        ["VaTeX", "vatex/5H02ohmoKow_000068_000078.mp4", "a man climbs a tree", "a man climbs down a tree", "test", "relation", ""],
    ])
    triplets = read_llm_csv(path, root)
    assert [t.id for t in triplets] == ["msr-vtt_video6323_001", "msr-vtt_video6323_002", "vatex_5H02ohmoKow_000068_000078_001"]
    assert [t.misalignment for t in triplets] == ["count", "flip", "relation"]
    assert [t.split for t in triplets] == ["train", "val", "test"]
    assert triplets[1].negative == "a woman, then a man, talks"
    assert triplets[0].video == str(root / "msrvtt" / "video6323.mp4")
    assert all(t.nle is None and t.hard is None for t in triplets)


def test_llm_feedback_csv_keeps_the_explanation(tmp_path):
    path = write_csv(tmp_path / "fb.csv", LLM_HEADER + ["nle"], [
        ["VaTeX", "v/a.mp4", "a dog runs", "a cat runs", "train", "object", "k", "there is a dog, not a cat"],
    ])
    (t,) = read_llm_csv(path, tmp_path)
    assert t.nle == "there is a dog, not a cat" and t.misalignment == "object"


def test_feedback_explanations_join_on_video_caption_and_negative(tmp_path, caplog):
    entail = write_csv(tmp_path / "entail.csv", LLM_HEADER, [
        ["VaTeX", "v/a.mp4", "a dog runs", "a cat runs", "train", "object", "k"],
        ["VaTeX", "v/a.mp4", "a dog runs", "a dog walks", "train", "action", "k"],
        ["VaTeX", "v/b.mp4", "a dog runs", "a cat runs", "train", "object", "k"],
    ])
    feedback = write_csv(tmp_path / "feedback.csv", ["source", "videopath", "caption", "neg_caption", "nle"], [
        ["VaTeX", "v/a.mp4", "a dog runs", "a cat runs", "there is a dog, not a cat"],
        ["VaTeX", "v/a.mp4", "a dog runs", "a dog sits", "the dog runs"],  # no such triplet
        ["VaTeX", "v/b.mp4", "a dog jumps", "a cat runs", "the caption differs"],  # caption differs
    ])
    with caplog.at_level("INFO", logger="synvita.data.videocon"):
        triplets = read_llm_csv(entail, tmp_path, feedback=feedback)
    assert [t.nle for t in triplets] == ["there is a dog, not a cat", None, None]
    assert "joined 1 explanations into 3 triplets" in caplog.text
    with pytest.raises(ManifestError, match="missing.csv: feedback CSV does not exist"):
        read_llm_csv(entail, tmp_path, feedback=tmp_path / "missing.csv")
    no_nle = write_csv(tmp_path / "no_nle.csv", ["source", "videopath", "caption", "neg_caption"], [])
    with pytest.raises(ManifestError, match=r"no_nle.csv:1: nle: missing column"):
        read_llm_csv(entail, tmp_path, feedback=no_nle)


def test_human_csv(tmp_path):
    path = write_csv(tmp_path / "human.csv", ["video_url", "caption", "neg_caption", "nle", "hard"], [
        ["https://bucket.s3.amazonaws.com/anet/v_abc.mp4?x=1", "people dance", "people sit", "they dance", "True"],
        ["https://bucket.s3.amazonaws.com/anet/v_def.mp4", "a girl sings", "a girl yells", "she sings", "false"],
    ])
    triplets = read_human_csv(path, tmp_path / "anet")
    assert [t.id for t in triplets] == ["videocon-human_v_abc_001", "videocon-human_v_def_001"]
    assert [t.hard for t in triplets] == [True, False]
    assert triplets[0].video == str(tmp_path / "anet" / "v_abc.mp4")
    assert triplets[0].misalignment is None and triplets[0].split == "test" and triplets[0].nle == "they dance"


@pytest.mark.parametrize("relpath", ["../outside.mp4", "a/../../outside.mp4", "/etc/passwd"])
def test_paths_escaping_the_root_are_refused(tmp_path, relpath):
    with pytest.raises(FieldError, match="escapes the video root"):
        resolve_video(tmp_path / "root", relpath)
    path = write_csv(tmp_path / "llm.csv", LLM_HEADER, [
        ["VaTeX", "ok.mp4", "c", "n", "train", "action", ""],
        ["VaTeX", relpath, "c", "n", "train", "action", ""],
    ])
    with pytest.raises(ManifestError, match=rf"^{path}:3: videopath: .* escapes the video root"):
        read_llm_csv(path, tmp_path / "root")


def test_paths_inside_the_root_are_kept(tmp_path):
    assert resolve_video(tmp_path, "a/./b/../c.mp4") == tmp_path / "a" / "c.mp4"


def test_csv_errors_name_file_line_and_column(tmp_path):
    path = write_csv(tmp_path / "bad.csv", LLM_HEADER[:5], [["VaTeX", "a.mp4", "c", "n", "train"]])
    with pytest.raises(ManifestError, match=rf"^{path}:1: misalignment: missing column"):
        read_llm_csv(path, tmp_path)
    path = write_csv(tmp_path / "bad2.csv", LLM_HEADER, [
        ["VaTeX", "a.mp4", "c", "n", "train", "action", ""],
        ["VaTeX", "b.mp4", "c", "", "train", "action", ""],
        ["VaTeX", "c.mp4", "c", "n", "train", "colour", ""],
    ])
    with pytest.raises(ManifestError, match=rf"^{path}:3: neg_caption: must not be empty"):
        read_llm_csv(path, tmp_path)
    path = write_csv(tmp_path / "bad3.csv", ["video_url", "caption", "neg_caption", "nle", "hard"],
                     [["https://x/v.mp4", "c", "n", "e", "maybe"]])
    with pytest.raises(ManifestError, match=rf"^{path}:2: hard: expected True or False"):
        read_human_csv(path, tmp_path)


def test_imported_triplet_points_at_a_real_video(shared_data, tmp_path):
    # VideoCon's own example clip, as a VaTeX row of the LLM CSV.
    path = write_csv(tmp_path / "llm.csv", LLM_HEADER, [[
        "VaTeX", "vatex_y5xuvHpDPZQ_000005_000015.mp4",
        "A soccer team walking off the field while the audience claps.",
        "A basketball team walking off the field while the audience claps.", "test", "object", "y5xuvHpDPZQ"]])
    (t,) = read_llm_csv(path, shared_data / "videos")
    assert read_video(t.video, FrameSampler("uniform", 2)).shape == (2, 720, 1280, 3)


# --- synvita data download ------------------------------------------------------------------

def test_download_arguments_are_checked(capsys):
    with pytest.raises(SystemExit):
        cli_main(["data", "download", "not-a-benchmark", "--to", "x"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["data", "download", "ssv2-temporal"])
    assert "--to" in capsys.readouterr().err


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_without_a_reachable_server_fails_clearly(tmp_path, capsys):
    base = f"http://127.0.0.1:{closed_port()}"
    code = cli_main(["data", "download", "ssv2-temporal", "--to", str(tmp_path / "out"), "--base-url", base, "--timeout", "2"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{base}/eval_ssv2_temporal.csv: cannot download" in err and "network" in err
    assert list((tmp_path / "out").iterdir()) == []


@pytest.fixture
def local_mirror(tmp_path):
    """A loopback HTTP server over a folder: exercises the download path without any network."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_from_a_mirror(local_mirror, tmp_path, capsys):
    folder, base = local_mirror
    body = "videopath,caption,match\nvideos/1.avi,something,1\n"
    (folder / "eval_ssv2_temporal.csv").write_text(body)
    out = tmp_path / "out"
    assert cli_main(["data", "download", "ssv2-temporal", "--to", str(out), "--base-url", base]) == 0
    assert (out / "eval_ssv2_temporal.csv").read_text() == body

    (folder / "eval_ssv2_events.csv").write_text("<html>please log in</html>\n")
    assert cli_main(["data", "download", "ssv2-events", "--to", str(out), "--base-url", base]) == 1
    assert "not the expected CSV" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["eval_ssv2_temporal.csv"]

    assert cli_main(["data", "download", "atp-hard", "--to", str(out), "--base-url", base]) == 1
    assert "HTTP 404" in capsys.readouterr().err


class HubMirror(http.server.BaseHTTPRequestHandler):
    """The two requests `hf_hub_download` makes of an HF_ENDPOINT mirror (HEAD for the metadata, GET
    for the bytes) over `files`, recording what each request carried."""

    files: dict[str, bytes] = {}
    seen: list[tuple[str, str, str | None]] = []

    def _reply(self, body: bool) -> None:
        self.seen.append((self.command, self.path, self.headers.get("Authorization")))
        data = self.files.get(self.path)
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", "0" * 40)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self):
        self._reply(body=False)

    def do_GET(self):
        self._reply(body=True)

    def log_message(self, *args):
        pass


def _download(out: Path, env: dict) -> subprocess.CompletedProcess:
    # A fresh process: huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE when it is imported.
    return subprocess.run([sys.executable, "-m", "synvita.cli", "data", "download", "videocon-human", "--to", str(out)],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def test_hub_files_come_through_hf_endpoint_with_the_token_and_the_cache(tmp_path):
    body = b"video_url,caption,neg_caption,hard\nhttps://x/1.mp4,a cat sits,a cat runs,1\n"
    HubMirror.files = {"/datasets/videocon/videocon/resolve/main/videocon_human.csv": body}
    HubMirror.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HubMirror)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}", "HF_HUB_CACHE": str(tmp_path / "cache"),
           "HF_TOKEN": "hf_secret_test", "HF_HUB_DISABLE_XET": "1"}
    try:
        done = _download(tmp_path / "out", env)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "out" / "videocon_human.csv").read_bytes() == body
        fetched = [(method, auth) for method, path, auth in HubMirror.seen if "/resolve/" in path]
        assert ("GET", "Bearer hf_secret_test") in fetched and all(a == "Bearer hf_secret_test" for _, a in fetched)
        assert list((tmp_path / "cache").glob("datasets--videocon--videocon/snapshots/*/videocon_human.csv"))

        # Offline, the cached copy is enough and the mirror is not asked again.
        HubMirror.seen = []
        done = _download(tmp_path / "again", {**env, "HF_HUB_OFFLINE": "1"})
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "again" / "videocon_human.csv").read_bytes() == body and not HubMirror.seen

        HubMirror.files = {}
        done = _download(tmp_path / "gone", {**env, "HF_HUB_CACHE": str(tmp_path / "empty")})
        assert done.returncode == 1 and "videocon_human.csv: not found" in done.stderr
    finally:
        server.shutdown()
        server.server_close()


def test_offline_without_the_file_says_which_file_and_where_it_goes(tmp_path):
    done = _download(tmp_path / "out", {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 1
    assert "videocon_human.csv is missing: HF_HUB_OFFLINE is set" in done.stderr
    assert "datasets/videocon/videocon/blob/main/videocon_human.csv" in done.stderr
    assert f"put it at {tmp_path / 'out' / 'videocon_human.csv'}" in done.stderr
    assert "Traceback" not in done.stderr
