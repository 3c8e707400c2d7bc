"""The library installs as the ``queuing`` package, Lua scripts included, and imports from
any folder: what ``pip install .`` gives a service that lifts it out of this project."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(path.stem for path in (ROOT / "queuing").glob("*.py"))
LUA = sorted(path.name for path in (ROOT / "queuing" / "lua").glob("*.lua"))

IMPORT_ALL = """
import importlib, sys
from importlib.resources import files
for name in sys.argv[1].split(","):
    module = importlib.import_module(f"queuing.{name}")
    assert not module.__file__.startswith(sys.argv[3]), module.__file__
for name in sys.argv[2].split(","):
    assert files("queuing").joinpath("lua", name).read_text().strip(), name
print("ok")
"""


def test_pip_install_gives_every_module_and_lua_script_outside_the_project(tmp_path):
    # A clean copy: a build/ folder left by an earlier build would hide a missing file.
    source = tmp_path / "source"
    shutil.copytree(ROOT / "queuing", source / "queuing",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--disable-pip-version-check",
                    "--target", str(target), str(source)],
                   check=True, capture_output=True, timeout=240)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, ",".join(MODULES), ",".join(LUA), str(ROOT)],
        cwd=elsewhere, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60)
    assert result.stdout == "ok\n", result.stderr
