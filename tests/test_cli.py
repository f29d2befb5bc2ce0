"""`synvita.cli.main(argv)` runs on the list it is given: sys.argv is read by the console script's
`main()` only, and `synvita --help` imports no stage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from synvita.cli import STAGES, main

REPO = Path(__file__).resolve().parents[1]


def test_main_uses_its_argument_list_not_sys_argv(monkeypatch, tmp_path, capsys):
    garbage = ["synvita", "train", "--no-such-flag", "x=1"]
    monkeypatch.setattr(sys, "argv", list(garbage))
    assert main(["configs", "copy", "tiny/synvita_cpu", str(tmp_path)]) == 0
    assert (tmp_path / "synvita_cpu.yaml").is_file()
    assert sys.argv == garbage
    capsys.readouterr()
    # Only the console script's call, with no list, reads sys.argv.
    monkeypatch.setattr(sys, "argv", ["synvita", "configs", "list"])
    assert main() == 0
    assert "tiny/synvita_cpu" in capsys.readouterr().out


def test_help_imports_no_stage():
    probe = ("import sys\nfrom synvita.cli import STAGES, main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print('LOADED', [m for _, m, _ in STAGES if m in sys.modules], 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert done.returncode == 0, done.stderr
    assert "LOADED [] False" in done.stdout
    # Every stage is still listed in the help.
    assert all(name in done.stdout for name, _, _ in STAGES)
