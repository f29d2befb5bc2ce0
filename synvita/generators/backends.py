"""Text-to-video backends: one `BACKENDS` entry per way of turning prompts into clips.

An entry is a class with `from_settings(settings) -> backend`; a backend has `fps` and
`generate(prompts, seeds) -> list of uint8 (T, H, W, 3) arrays`, one clip per prompt, each drawn from
its own seeded generator so a clip does not depend on which other prompts share its batch.

- `cogvideox`, `ltx-video`, `wan`: the diffusers pipelines (hub ids in generation/configs/*.yaml);
- `diffusers`: any other diffusers text-to-video pipeline, by `pipeline_class` and `model`;
- `external`: a user's command line or Python function per batch (LaVie, VideoCrafter2, ...).
"""

from __future__ import annotations

import importlib
import json
import os
import shlex
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from synvita.errors import SynvitaError
from synvita.registry import Registry

BACKENDS: Registry = Registry("text-to-video backend", required=("from_settings",))


class SettingsError(SynvitaError):
    """Backend settings that cannot work; the message names the backend and the key."""


def _take(settings: dict, defaults: dict, backend: str) -> dict:
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise SettingsError(f"backend {backend!r}: unknown setting(s) {', '.join(unknown)}; "
                            f"valid: {', '.join(sorted(defaults))}")
    return {**defaults, **settings}


def to_uint8(video, where: str) -> np.ndarray:
    """Pipeline output in [0, 1] (T, H, W, C) to uint8; NaN or inf is an error, not a black clip."""
    video = np.asarray(video, dtype=np.float32)
    if not np.isfinite(video).all():
        raise FloatingPointError(f"{where}: the generated frames contain NaN or inf")
    return (np.clip(video, 0.0, 1.0) * 255).round().astype(np.uint8)


def process_device(device: str | None):
    """The device this process owns. Under `accelerate launch` (or torchrun) process LOCAL_RANK of a node
    drives GPU LOCAL_RANK, as accelerate's own PartialState places it; a device given with an index is kept."""
    import torch

    d = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if d.type == "cuda" and d.index is None:
        d = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % max(1, torch.cuda.device_count()))
    return d


# `offload` setting -> how the pipeline is placed (diffusers' three CPU offload modes).
OFFLOAD = (None, "model", "sequential", "group")


class DiffusersBackend:
    """A diffusers pipeline; memory options (CPU offload, VAE tiling/slicing) are settings.

    `offload`: null keeps the whole pipeline on the device; `model` moves one component at a time onto it
    (enable_model_cpu_offload), `sequential` one leaf module at a time (least memory, slowest), `group`
    groups of blocks (enable_group_offload, its arguments in `group_offload`, e.g. `{num_blocks_per_group: 2,
    use_stream: true}`).
    """

    name = "diffusers"
    pipeline_class: str | None = None  # None: the class named in the checkpoint (DiffusionPipeline)
    defaults = dict(
        model=None, pipeline_class=None, dtype="float32", vae_dtype=None, device=None, steps=50, guidance=6.0,
        height=480, width=720, num_frames=49, fps=8.0, negative_prompt="", max_sequence_length=None,
        offload=None, group_offload={}, vae_tiling=False, vae_slicing=False, cache_dir=None, call_kwargs={},
    )

    def __init__(self, settings: dict):
        import torch
        import diffusers

        from synvita.tiny import materialize

        s = self.settings = settings
        if not s["model"]:
            raise SettingsError(f"backend {self.name!r}: set `model` to a hub id, a folder or tiny:<kind>")
        if s["offload"] not in OFFLOAD:
            raise SettingsError(f"backend {self.name!r}: offload {s['offload']!r} is not one of "
                                f"null, {', '.join(OFFLOAD[1:])}")
        cls_name = s["pipeline_class"] or self.pipeline_class or "DiffusionPipeline"
        cls = getattr(diffusers, cls_name, None)
        if cls is None:
            raise SettingsError(f"backend {self.name!r}: diffusers has no pipeline class {cls_name!r}")
        self.pipe = cls.from_pretrained(materialize(s["model"], s["cache_dir"]), dtype=getattr(torch, s["dtype"]))
        if s["vae_dtype"]:  # null: the pipeline's dtype
            self.pipe.vae.to(getattr(torch, s["vae_dtype"]))
        device = process_device(s["device"])
        if s["offload"] == "model":
            self.pipe.enable_model_cpu_offload(device=device)
        elif s["offload"] == "sequential":
            self.pipe.enable_sequential_cpu_offload(device=device)
        elif s["offload"] == "group":
            self.pipe.enable_group_offload(onload_device=device, **{
                "offload_type": "block_level", "num_blocks_per_group": 1, **s["group_offload"]})
        else:
            self.pipe.to(device)
        if s["vae_tiling"]:
            self.pipe.vae.enable_tiling()
        if s["vae_slicing"]:
            self.pipe.vae.enable_slicing()
        self.pipe.set_progress_bar_config(disable=True)
        self.fps = float(s["fps"])

    @classmethod
    def from_settings(cls, settings: dict):
        return cls(_take(settings, cls.defaults, cls.name))

    def generate(self, prompts: list[str], seeds: list[int]) -> list[np.ndarray]:
        import torch

        s = self.settings
        # Not every pipeline takes max_sequence_length: it is passed only when set.
        extra = {"max_sequence_length": s["max_sequence_length"]} if s["max_sequence_length"] else {}
        out = self.pipe(
            prompt=prompts, negative_prompt=[s["negative_prompt"]] * len(prompts),
            num_inference_steps=s["steps"], guidance_scale=s["guidance"], height=s["height"], width=s["width"],
            num_frames=s["num_frames"], output_type="np",
            generator=[torch.Generator().manual_seed(seed) for seed in seeds], **extra, **s["call_kwargs"],
        ).frames
        return [to_uint8(video, f"{self.name} prompt {p!r}") for video, p in zip(out, prompts)]


def _family(name: str, pipeline_class: str, **defaults):
    cls = type(f"{pipeline_class}Backend", (DiffusersBackend,), {
        "name": name, "pipeline_class": pipeline_class, "defaults": {**DiffusersBackend.defaults, **defaults}})
    BACKENDS.register(name, cls)
    return cls


BACKENDS.register("diffusers", DiffusersBackend)
# Defaults follow each model card: resolution, frame count and native frame rate.
_family("cogvideox", "CogVideoXPipeline", height=480, width=720, num_frames=49, fps=8.0, guidance=6.0,
        max_sequence_length=226)
_family("ltx-video", "LTXPipeline", height=480, width=704, num_frames=161, fps=24.0, guidance=3.0, steps=50,
        max_sequence_length=128)
# Wan decodes with a float32 VAE, as diffusers' Wan documentation recommends for quality.
_family("wan", "WanPipeline", height=480, width=832, num_frames=81, fps=16.0, guidance=5.0,
        max_sequence_length=512, vae_dtype="float32")


@BACKENDS.register("external")
class ExternalBackend:
    """A user's generator, run once per batch.

    `command`: a command line; `{request}` is replaced by a JSON file holding `prompts`, `seeds`,
    `out_dir` and `options`; the command writes `out_dir/<i>.mp4` for prompt i.
    `entry_point`: `module:function`, called as `function(prompts, seeds, options)` and returning
    one uint8 (T, H, W, 3) array per prompt.
    """

    defaults = dict(command=None, entry_point=None, fps=8.0, options={}, timeout=None)

    def __init__(self, settings: dict):
        self.settings = settings
        if bool(settings["command"]) == bool(settings["entry_point"]):
            raise SettingsError("backend 'external': set exactly one of `command` and `entry_point`")
        self.fps = float(settings["fps"])
        self.function = None
        if settings["entry_point"]:
            module, _, attr = settings["entry_point"].partition(":")
            try:
                self.function = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as err:
                raise SettingsError(f"backend 'external': cannot load entry_point "
                                    f"{settings['entry_point']!r}: {err}") from None

    @classmethod
    def from_settings(cls, settings: dict):
        return cls(_take(settings, cls.defaults, "external"))

    def generate(self, prompts: list[str], seeds: list[int]) -> list[np.ndarray]:
        if self.function is not None:
            videos = self.function(list(prompts), list(seeds), dict(self.settings["options"]))
        else:
            videos = self._run_command(prompts, seeds)
        if len(videos) != len(prompts):
            raise RuntimeError(f"external generator returned {len(videos)} clips for {len(prompts)} prompts")
        return [np.asarray(v) for v in videos]

    def _run_command(self, prompts, seeds):
        from synvita.data.video import FrameSampler, read_video

        with tempfile.TemporaryDirectory(prefix="synvita-external-") as tmp:
            request = Path(tmp) / "request.json"
            request.write_text(json.dumps({"prompts": prompts, "seeds": seeds, "out_dir": tmp,
                                           "options": self.settings["options"]}))
            cmd = self.settings["command"]
            argv = [a.replace("{request}", str(request)) for a in (shlex.split(cmd) if isinstance(cmd, str) else cmd)]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self.settings["timeout"])
            if done.returncode:
                raise RuntimeError(f"external command {argv[0]} exited {done.returncode}: {done.stderr.strip()[-500:]}")
            return [read_video(Path(tmp) / f"{i}.mp4", FrameSampler("all")) for i in range(len(prompts))]
