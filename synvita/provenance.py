"""What produced a result: package versions, date, host facts. Recorded with every output file."""

from __future__ import annotations

import datetime
import platform
from importlib import metadata

PACKAGES = (
    "synvita", "torch", "torchvision", "transformers", "diffusers", "peft", "accelerate",
    "datasets", "av", "scikit-learn", "deepspeed", "bitsandbytes",
)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def provenance(**details) -> dict:
    """A provenance block: the caller's details (model, frames, seed, ...) plus versions and date."""
    return {
        **details,
        "versions": package_versions(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
