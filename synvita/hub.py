"""`synvita push RUN_OR_ADAPTER --repo-id OWNER/NAME [--dry-run --out DIR]`: share a trained adapter.

The folder that goes to the hub holds the PEFT adapter, the run's `resolved.yaml`, the evaluation
JSONs made with this adapter and a model card (README.md) written from the run's files only: base model
and family, the objective's settings (weighting, λ_scr, γ), LoRA settings, generators and clip counts,
the sha256 of each training manifest, and every evaluation result with its provenance. `--dry-run`
writes the folder and uploads nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from synvita.errors import SynvitaError
from synvita.utils import atomic_write_text


class PushError(SynvitaError):
    """A run or adapter folder that cannot be shared; the message names the file."""


@dataclass
class CardFacts:
    adapter: Path
    run_dir: Path
    config: dict  # the `config` block of resolved.yaml
    versions: dict
    lora: dict  # adapter_config.json
    step: int | None
    family: str
    clips: dict[str, dict[str, int]] = field(default_factory=dict)  # generator -> {done, failed, used}
    real_only: int = 0
    manifests: dict[str, dict] = field(default_factory=dict)  # data key -> {path, sha256, lines}
    evals: list[tuple[Path, dict]] = field(default_factory=list)


def locate(path: Path) -> tuple[Path, Path]:
    """(adapter folder, training output folder) from either one."""
    from synvita.training.checkpoints import list_checkpoints

    if (path / "adapter_config.json").is_file():
        for run_dir in path.parents:
            if (run_dir / "resolved.yaml").is_file():
                return path, run_dir
        raise PushError(f"{path}: an adapter, but no resolved.yaml above it (not from `synvita train`)")
    if (path / "resolved.yaml").is_file():
        found = list_checkpoints(path / "checkpoints")
        if not found or not (found[-1] / "adapter" / "adapter_config.json").is_file():
            raise PushError(f"{path}: no checkpoint with an adapter under {path / 'checkpoints'}")
        return found[-1] / "adapter", path
    raise PushError(f"{path}: neither a training output folder (resolved.yaml) nor an adapter (adapter_config.json)")


def _family(base: str) -> str:
    from transformers import AutoConfig

    from synvita.models.families import family_for_model_type

    try:
        return family_for_model_type(AutoConfig.from_pretrained(base).model_type).name
    except (OSError, ValueError) as err:  # offline hub id, or not a supported family
        return f"unknown ({type(err).__name__}: {str(err).splitlines()[0][:120]})"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _same_adapter(recorded: str | None, adapter: Path) -> bool:
    return bool(recorded) and Path(recorded).resolve() == adapter.resolve()


def find_evals(adapter: Path, roots: list[Path]) -> list[tuple[Path, dict]]:
    """Evaluation JSONs (`synvita evaluate --out`) under `roots` whose provenance names this adapter."""
    found = {}
    for root in roots:
        for path in sorted(root.rglob("*.json")) if root.is_dir() else ():
            if path.name.endswith(".predictions.json") or path.resolve() in found:
                continue
            try:
                data = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(data, dict) and "benchmark" in data and _same_adapter(
                    (data.get("provenance") or {}).get("adapter"), adapter):
                found[path.resolve()] = (path, data)
    return sorted(found.values(), key=lambda item: (item[1]["benchmark"], str(item[0])))


def gather(path: Path, eval_roots: list[Path] = ()) -> CardFacts:
    """Everything the card says, read from the run's files."""
    from synvita.config import ConfigError, from_dict
    from synvita.data.records import SyntheticClip, read_manifest
    from synvita.training.config import DataConfig
    from synvita.training.data import load_examples

    adapter, run_dir = locate(path)
    resolved = yaml.safe_load((run_dir / "resolved.yaml").read_text())
    config, versions = resolved["config"], resolved.get("versions", {})
    lora = json.loads((adapter / "adapter_config.json").read_text())
    state = adapter.parent / "trainer_state.json"
    step = json.loads(state.read_text()).get("step") if state.is_file() else None
    base = lora.get("base_model_name_or_path") or config["model"]["name_or_path"]
    facts = CardFacts(adapter, run_dir, config, versions, lora, step, _family(base))

    data = config["data"]
    for key in ("triplets", "clips", "weights"):
        if data.get(key):
            p = Path(data[key])
            facts.manifests[key] = ({"path": str(p), "sha256": _sha256(p), "lines": len(p.read_bytes().splitlines())}
                                    if p.is_file() else {"path": str(p), "sha256": None, "lines": None})
    if data.get("clips") and Path(data["clips"]).is_file():
        status = Counter((c.generator, c.status) for c in read_manifest(Path(data["clips"]), SyntheticClip))
        try:
            examples, _ = load_examples(from_dict(DataConfig, data, "resolved.yaml: data"),
                                        config["loss"]["weighting"])
        except (ConfigError, OSError, ValueError) as err:
            raise PushError(f"{run_dir / 'resolved.yaml'}: its training data cannot be read: {err}") from err
        used = Counter(e.clip.generator for e in examples if e.clip is not None)
        facts.real_only = sum(e.clip is None for e in examples)
        for generator in sorted({g for g, _ in status}):
            facts.clips[generator] = {"done": status[generator, "done"], "failed": status[generator, "failed"],
                                      "used": used[generator]}
    roots = [run_dir, *([Path(data["triplets"]).parent] if data.get("triplets") else []), *eval_roots]
    facts.evals = find_evals(adapter, roots)
    return facts


def _table(header: tuple[str, ...], rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    # A "|" inside a cell (a LoRA target regex) would end the cell.
    return "\n".join(lines + ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows])


def model_card(facts: CardFacts, repo_id: str) -> str:
    from synvita.report.html import metric_keys

    cfg, loss, lora = facts.config, facts.config["loss"], facts.lora
    base = lora.get("base_model_name_or_path") or cfg["model"]["name_or_path"]
    clips = bool(cfg["data"].get("clips"))
    objective = " + ".join(["L_real", *(["L_syn^w"] if clips and loss["syn"] else []),
                            *(["λ_scr·L_scr^w"] if clips and loss["scr"] else [])])
    meta = {"library_name": "peft", "tags": ["synvita", "lora", "video-text-to-text", "video-entailment"]}
    if not Path(base).exists():  # the hub links a hub id; a local folder stays in the text only
        meta["base_model"] = base
    targets = lora.get("target_modules")
    settings = [
        ("base model", base), ("family", facts.family), ("objective", objective),
        ("weighting", loss["weighting"]), ("λ_scr", loss["lambda_scr"]), ("γ", loss["gamma"]),
        ("loss normalization", loss["normalization"]),
        ("L_syn / L_scr", f"{'on' if loss['syn'] else 'off'} / {'on' if loss['scr'] else 'off'}"),
        ("LoRA r / alpha / dropout", f"{lora.get('r')} / {lora.get('lora_alpha')} / {lora.get('lora_dropout')}"),
        ("LoRA targets", ", ".join(sorted(targets)) if isinstance(targets, list) else targets),
        ("steps", facts.step), ("learning rate", cfg["optim"]["lr"]),
        ("batch per device x accumulation", f"{cfg['per_device_batch_size']} x {cfg['gradient_accumulation_steps']}"),
        ("frames", json.dumps(cfg["data"]["frames"])), ("mixed precision", cfg["mixed_precision"]),
        ("seed", cfg["seed"]), ("generators kept", cfg["data"].get("generators") or "all"),
        ("misalignments kept", cfg["data"].get("misalignments") or "all"),
    ]
    parts = [
        "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---",
        f"# {repo_id.split('/')[-1]}",
        f"A LoRA adapter for `{base}` trained with SynViTA (VideoCon triplets, synthetic videos of the negative "
        "captions weighted by a VQAScore ensemble). Written by `synvita push` from the run's files.",
        "## Training", _table(("setting", "value"), settings),
        "## Synthetic clips",
        (_table(("generator", "clips done", "clips failed", "training examples with this generator's clip"),
                [(g, c["done"], c["failed"], c["used"]) for g, c in facts.clips.items()])
         + f"\n\nTraining examples on the real video only: {facts.real_only}."
         if facts.clips else "None: trained on real videos only."),
        "## Training data", _table(("manifest", "path", "sha256", "lines"),
                                   [(k, f"`{m['path']}`", m["sha256"] or "missing", m["lines"] or "-")
                                    for k, m in facts.manifests.items()]),
        "## Evaluation",
    ]
    if facts.evals:
        rows = []
        for path, result in facts.evals:
            prov = result.get("provenance") or {}
            metrics = ", ".join(f"{k} {result[k]:.2f}" for k in metric_keys(result))
            rows.append((result["benchmark"], metrics, prov.get("sampler"), prov.get("seed"), prov.get("date"),
                         f"`{_pushed_name(path)}`"))
        parts += [_table(("benchmark", "metrics (%)", "sampler", "seed", "date", "file"), rows),
                  "Provenance of each result (model, adapter, frames, dtype, pairs, package versions):",
                  "```json\n" + json.dumps({r["benchmark"]: r.get("provenance") for _, r in facts.evals},
                                           indent=1, default=str) + "\n```"]
    else:
        parts.append("No evaluation made with this adapter was found.")
    parts += [
        "## Use",
        "```python\nfrom peft import PeftModel\nfrom synvita.models.families import load_video_lmm\n\n"
        f"lmm = load_video_lmm({base!r})\nlmm.model = PeftModel.from_pretrained(lmm.model, {repo_id!r})\n```",
        "## Versions", _table(("package", "version"), sorted(facts.versions.items())),
    ]
    return "\n\n".join(parts) + "\n"


def _pushed_name(path: Path) -> str:
    """Where an evaluation JSON goes in the pushed folder: `eval/<its folder>/<file>`, as the harness lays
    results out (`eval/<run>/<benchmark>.json`), so results of several runs do not collide."""
    return f"eval/{path.parent.name}/{path.name}"


def write_folder(facts: CardFacts, repo_id: str, out: Path) -> Path:
    """The folder as it goes to the hub: adapter files, resolved.yaml, eval/*.json and README.md."""
    if out.exists():
        if any(out.iterdir()) and not (out / "adapter_config.json").is_file():
            raise PushError(f"--out {out}: not empty and not an earlier push folder; give a new folder")
        shutil.rmtree(out)
    shutil.copytree(facts.adapter, out, ignore=shutil.ignore_patterns("README.md"))
    shutil.copy(facts.run_dir / "resolved.yaml", out / "resolved.yaml")
    for path, _ in facts.evals:
        (out / _pushed_name(path)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out / _pushed_name(path))
    atomic_write_text(out / "README.md", model_card(facts, repo_id))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, metavar="RUN_OR_ADAPTER",
                        help="a training output folder (its last checkpoint) or an adapter folder")
    parser.add_argument("--repo-id", required=True, help="hub repository, owner/name")
    parser.add_argument("--dry-run", action="store_true", help="write the folder (and its card) and upload nothing")
    parser.add_argument("--out", type=Path, help="where to write the folder (default: RUN/push)")
    parser.add_argument("--evals", type=Path, action="append", default=[],
                        help="another folder to search for evaluation JSONs of this adapter (repeatable; the "
                             "training folder and the run folder of its triplets are always searched)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--token", help="hub token (default: HF_TOKEN or the one `hf auth login` saved)")


def run(args: argparse.Namespace) -> int:
    try:
        facts = gather(args.path, args.evals)
        folder = write_folder(facts, args.repo_id, args.out or facts.run_dir / "push")
    except PushError as err:
        print(f"synvita push: {err}", file=sys.stderr)
        return 2
    print(f"push: {folder} ({len(facts.evals)} evaluation(s), adapter {facts.adapter})")
    if args.dry_run:
        return 0
    from huggingface_hub import HfApi

    api = HfApi(token=args.token)
    api.create_repo(args.repo_id, private=args.private, exist_ok=True)
    commit = api.upload_folder(repo_id=args.repo_id, folder_path=folder,
                               commit_message=f"synvita push of {facts.adapter}")
    print(f"push: {commit.commit_url}")
    return 0
