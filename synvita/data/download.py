"""`synvita data download <benchmark> --to DIR`: fetch a benchmark's annotation files.

Only annotations (CSV) are fetched; the videos come from their source datasets under their own
licenses (see each file's README upstream). Needs a network; without one it says which URL failed
and how to fetch the file by hand.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

VIDEOCON_GITHUB = "https://raw.githubusercontent.com/Hritikbansal/videocon/main/datasets"
VIDEOCON_HF = "https://huggingface.co/datasets/videocon/videocon/resolve/main"

# benchmark -> (default base URL, [(file name, columns its header must have)])
BENCHMARKS: dict[str, tuple[str, list[tuple[str, tuple[str, ...]]]]] = {
    "ssv2-temporal": (VIDEOCON_GITHUB, [("eval_ssv2_temporal.csv", ("videopath", "caption", "match"))]),
    "ssv2-events": (VIDEOCON_GITHUB, [("eval_ssv2_events.csv", ("videopath", "caption", "match"))]),
    "atp-hard": (VIDEOCON_GITHUB, [
        ("eval-nextqa-atphard.csv", ("videopath", "question", "answer", "option", "caption")),
        ("nextqa-atphard.csv", ("video", "question", "answer", "type")),
        ("nextqa-atphard-statements.csv", ("s0", "s4")),
    ]),
    "videocon-llm": (VIDEOCON_HF, [
        ("videocon_llm_entailment.csv", ("source", "videopath", "caption", "neg_caption", "misalignment")),
        ("videocon_llm_feedback.csv", ("source", "videopath", "caption", "neg_caption", "nle")),
    ]),
    "videocon-human": (VIDEOCON_HF, [("videocon_human.csv", ("video_url", "caption", "neg_caption", "hard"))]),
}


class DownloadError(RuntimeError):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    download = actions.add_parser("download", help="fetch a benchmark's annotation files")
    download.add_argument("benchmark", choices=sorted(BENCHMARKS))
    download.add_argument("--to", type=Path, required=True, help="directory to write the files into")
    download.add_argument("--base-url", help="fetch from this mirror instead (files keep their names)")
    download.add_argument("--timeout", type=float, default=30.0, help="seconds per connection attempt")


def fetch(url: str, dest: Path, header: tuple[str, ...], timeout: float) -> None:
    """Stream `url` into `dest` atomically, then check the CSV header (an HTML error page is not a CSV)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                size = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=size, unit="B", unit_scale=True, desc=dest.name) as bar:
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as e:
            gated = " (the dataset may be gated: accept its terms on its page, then fetch it by hand)"
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}{gated if e.code in (401, 403) else ''}") from e
        except OSError as e:  # URLError, refused connections and timeouts are all OSErrors
            reason = getattr(e, "reason", e)
            raise DownloadError(f"{url}: cannot download ({reason}); is there a network? "
                                f"Fetch it by hand into {dest}") from e
        with open(tmp, encoding="utf-8-sig", errors="replace") as f:
            columns = f.readline().strip().split(",")
        missing = [c for c in header if c not in columns]
        if missing:
            raise DownloadError(f"{url}: not the expected CSV (missing columns {missing}; first line {columns[:8]})")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    base, files = BENCHMARKS[args.benchmark]
    base = (args.base_url or base).rstrip("/")
    try:
        for name, header in files:
            fetch(f"{base}/{name}", args.to / name, header, args.timeout)
    except DownloadError as e:
        print(f"synvita data download: {e}", file=sys.stderr)
        return 1
    print(f"{args.benchmark}: {len(files)} file(s) in {args.to}")
    return 0
