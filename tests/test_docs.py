"""The README's and docs/'s code blocks run as written, in a fresh copy of the repository.

Every ```python block of a page runs, in order, in one process; every ```bash block runs line by line with bash.
The set-up commands themselves (`make test`, which is this very run) are the only lines left out. Training runs
with ``HF_ADAPTER_KIT_SMOKE=1`` (2 steps on 64 examples; see ``hf_adapter_kit/training/args.py``), so the blocks are
checked for running, not for their figures; ``tests/test_quickstart.py`` checks the quick start's results at full
budget. A block preceded by ``<!-- docs-test: skip REASON -->`` is not run; the reason must be said (a GPU, files
of your own), and the README has none.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(
    r"(?:<!-- docs-test: skip (?P<skip>[^>]*)-->\s*\n)?```(?P<lang>python|bash)\n(?P<code>.*?)```", re.S
)
NOT_RUN = ("make test", "make setup")  # this test is part of `make test`; the venv it runs in is the set-up


def blocks(page: Path) -> list[tuple[str, str, str | None]]:
    return [(m["lang"], m["code"], m["skip"]) for m in BLOCK.finditer(page.read_text())]


def test_skipped_blocks_say_why_and_the_readme_skips_none():
    for page in PAGES:
        for _, _, skip in blocks(page):
            if skip is not None:
                assert page.name != "README.md", "every README block runs"
                assert len(skip.strip()) > 10, f"{page.name}: a skipped block must say why"


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory) -> Path:
    """The files a fresh clone holds (tracked and not ignored), without outputs of earlier runs."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    target = tmp_path_factory.mktemp("clone")
    for name in listed:
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


def _environment() -> dict[str, str]:
    venv = Path(sys.executable).parent
    return os.environ | {
        "HF_ADAPTER_KIT_SMOKE": "1",
        "HF_HUB_OFFLINE": "1",
        "PATH": f"{venv}{os.pathsep}{os.environ['PATH']}",
        "VENV": str(venv.parent),  # make's targets reuse this environment instead of creating .venv
        "PYTHONUNBUFFERED": "1",
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_code_blocks_run_as_written(page, fresh_copy):
    work = fresh_copy
    python = [code for lang, code, skip in blocks(page) if lang == "python" and skip is None]
    shell = [code for lang, code, skip in blocks(page) if lang == "bash" and skip is None]
    if not python and not shell:
        pytest.skip(f"{page.name} has no code blocks")
    env = _environment()
    stamp = Path(env["VENV"]) / ".hf_adapter_kit-installed"
    for code in shell:
        lines = [line for line in code.splitlines() if line.strip() and not line.startswith(NOT_RUN)]
        # this environment is set up already: make must not reinstall the copy into it (-o: the stamp counts as new)
        lines = [f"make -o {stamp} {line[5:]}" if line.startswith("make ") else line for line in lines]
        script = "set -euo pipefail\n" + "\n".join(lines)
        done = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{page.name}:\n{script}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    if python:
        source = "\n\n".join(python)
        done = subprocess.run(
            [sys.executable, "-c", source], cwd=work, env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"{page.name}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
