"""`synvita data download <benchmark> --to DIR`: fetch a benchmark's annotation files.

Only annotations (CSV) are fetched; the videos come from their source datasets under their own
licenses (see each file's README upstream). Files on the Hugging Face hub go through
`huggingface_hub.hf_hub_download`: your token (`HF_TOKEN` or `hf auth login`), its cache, resumed
downloads, `HF_ENDPOINT` mirrors and `HF_HUB_OFFLINE=1`. Files on GitHub are fetched from their URL
(`--base-url` for a mirror). When a file cannot be fetched, the error names it, where to get it and
where to put it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from synvita.data.benchmarks import BENCHMARKS, HubDataset
from synvita.errors import SynvitaError
from synvita.utils import atomic_path

class DownloadError(SynvitaError):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    download = actions.add_parser("download", help="fetch a benchmark's annotation files")
    download.add_argument("benchmark", choices=BENCHMARKS.names())
    download.add_argument("--to", type=Path, required=True, help="directory to write the files into")
    download.add_argument("--base-url", help="fetch GitHub-hosted files from this mirror (files keep their names); "
                                             "hub-hosted files follow HF_ENDPOINT")
    download.add_argument("--token", help="hub token (default: HF_TOKEN or the one `hf auth login` saved)")
    download.add_argument("--cache-dir", type=Path, help="hub cache (default: HF_HUB_CACHE)")
    download.add_argument("--timeout", type=float, default=30.0, help="seconds per connection attempt (GitHub files)")


def check_header(path: Path, header: tuple[str, ...], source: str) -> None:
    """An HTML error page or a wrong file is not the expected CSV: say so before it is used."""
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        columns = f.readline().strip().split(",")
    missing = [c for c in header if c not in columns]
    if missing:
        raise DownloadError(f"{source}: not the expected CSV (missing columns {missing}; first line {columns[:8]})")


def fetch(url: str, dest: Path, header: tuple[str, ...], timeout: float) -> None:
    """Stream `url` into `dest` atomically, then check the CSV header."""
    with atomic_path(dest) as tmp:
        try:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                size = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=size, unit="B", unit_scale=True, desc=dest.name) as bar:
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as e:
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}; fetch it by hand into {dest}") from e
        except OSError as e:  # URLError, refused connections and timeouts are all OSErrors
            reason = getattr(e, "reason", e)
            raise DownloadError(f"{url}: cannot download ({reason}); is there a network? "
                                f"Fetch it by hand into {dest}") from e
        check_header(tmp, header, url)


def fetch_from_hub(dataset: HubDataset, name: str, dest: Path, header: tuple[str, ...], token: str | None,
                   cache_dir: Path | None) -> None:
    """Download through the hub cache (resumed if interrupted, reused when present), then copy to `dest`."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError)

    page = f"{constants.ENDPOINT}/datasets/{dataset.repo_id}/blob/{dataset.revision}/{name}"
    by_hand = f"download {page} and put it at {dest}"
    try:
        cached = hf_hub_download(dataset.repo_id, name, repo_type="dataset", revision=dataset.revision,
                                 token=token, cache_dir=cache_dir)
    except GatedRepoError as e:
        raise DownloadError(f"{name}: the dataset {dataset.repo_id} is gated: accept its terms on its page and "
                            f"log in (`hf auth login` or HF_TOKEN), or {by_hand}") from e
    except LocalEntryNotFoundError as e:
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the hub cannot be reached"
        raise DownloadError(f"{name} is missing: {why} and it is not in the hub cache; {by_hand}") from e
    # After LocalEntryNotFoundError, which is a kind of EntryNotFoundError.
    except (RepositoryNotFoundError, EntryNotFoundError) as e:
        raise DownloadError(f"{name}: not found on {constants.ENDPOINT} ({type(e).__name__}); {by_hand}") from e
    except HfHubHTTPError as e:
        raise DownloadError(f"{name}: {e}; {by_hand}") from e
    check_header(Path(cached), header, page)
    with atomic_path(dest) as tmp:
        shutil.copyfile(cached, tmp)


def run(args: argparse.Namespace) -> int:
    spec = BENCHMARKS.get(args.benchmark)
    files = spec.files + spec.extra_files
    try:
        if spec.source is None:
            raise DownloadError(f"{spec.name}: its files ({', '.join(f.name for f in files)}) have no download "
                                f"source; put them in {args.to} by hand")
        for f in files:
            if isinstance(spec.source, HubDataset):
                fetch_from_hub(spec.source, f.name, args.to / f.name, f.columns, args.token, args.cache_dir)
            else:
                fetch(f"{(args.base_url or spec.source).rstrip('/')}/{f.name}", args.to / f.name, f.columns,
                      args.timeout)
    except DownloadError as e:
        print(f"synvita data download: {e}", file=sys.stderr)
        return 1
    print(f"{args.benchmark}: {len(files)} file(s) in {args.to}")
    return 0
