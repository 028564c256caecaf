"""The container image recipe. No container engine runs here, so the Dockerfile is read as data: the
final stage is a slim Python runtime without build tools, runs as uid 65532 and starts `rightsizer
run`; the build stage installs this package. The build context (.dockerignore applied) is rebuilt
into a wheel, so the image would contain the operator and its console script."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BUILD_TOOLS = ("gcc", "g++", "make", "build-essential", "apt-get", "apk ", "python3-dev", "git ")


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for k, arg in self.instructions if k == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined and comments dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    )
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(base, name))
        elif keyword == "ARG" and not stages:
            key, _, default = rest.partition("=")
            args[key] = default
        elif stages:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())[1]


def test_the_image_is_multi_stage_on_a_slim_python_matching_the_package(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = re.search(r">=\s*(\d+\.\d+)", requires)
    assert minimum
    for stage in stages:
        assert re.fullmatch(rf"python:{re.escape(minimum.group(1))}-slim(-\w+)?", stage.base), stage.base
    assert stages[0].base == stages[-1].base, "the venv's interpreter path must exist in the runtime stage"


def test_the_entrypoint_is_rightsizer_run_in_exec_form(stages: list[Stage]) -> None:
    [entrypoint] = stages[-1].all("ENTRYPOINT")
    assert entrypoint.startswith("["), "exec form, so the operator is PID 1 and gets SIGTERM"
    assert shlex.split(entrypoint.strip("[]").replace(",", " ")) == ["rightsizer", "run"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["rightsizer"] == "rightsizer.cli.main:main"
    assert "register(" in (ROOT / "operator/rightsizer/cli/run.py").read_text()


def test_the_runtime_runs_as_the_charts_non_root_uid(stages: list[Stage]) -> None:
    [user] = stages[-1].all("USER")
    assert user == "65532:65532", "numeric, so the kubelet can check runAsNonRoot"
    chart = (ROOT / "helm/gpu-rightsizer/templates/deployment.yaml").read_text()
    assert "runAsUser: 65532" in chart
    assert any("useradd" in run and "--uid 65532" in run for run in stages[-1].all("RUN"))


def test_the_build_stage_installs_this_package_and_the_runtime_copies_only_the_environment(
    stages: list[Stage],
) -> None:
    build, runtime = stages[0], stages[-1]
    copied = " ".join(build.all("COPY"))
    assert "pyproject.toml" in copied and "operator" in copied
    run = " ".join(build.all("RUN"))
    assert "pip wheel" in run and " ." in run, "builds the wheel of this project"
    assert "install" in run and "gpu-rightsizer" in run, "installs the package by its name"
    assert "rightsizer --help" in run, "the console script is checked at build time"
    runtime_copies = runtime.all("COPY")
    assert runtime_copies == [f"--from={build.name} /opt/rightsizer /opt/rightsizer"]
    assert any("/opt/rightsizer/bin" in e for e in runtime.all("ENV"))


def test_no_build_tools_in_the_runtime_stage(stages: list[Stage]) -> None:
    runtime = " ".join(stages[-1].all("RUN"))
    for tool in BUILD_TOOLS:
        assert tool not in runtime, tool
    assert "pip uninstall" in runtime, "the base image's pip and setuptools are removed"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rules: the last matching pattern wins; a pattern also matches everything under it."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.rstrip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, p) for p in prefixes) or fnmatch.fnmatch(path, pattern):
            ignored = not negate
    return ignored


def _context_files() -> list[str]:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    files: list[str] = []
    for directory, subdirs, names in os.walk(ROOT):
        # Never part of the context either way; skipping them keeps the walk fast.
        subdirs[:] = [d for d in subdirs if d not in (".git", ".venv") and not d.endswith("_cache")]
        base = Path(directory).relative_to(ROOT)
        files.extend((base / n).as_posix() for n in names)
    return [f for f in files if not _ignored(f, patterns)]


def test_the_build_context_holds_the_package_and_nothing_else() -> None:
    context = _context_files()
    assert "pyproject.toml" in context and "README.md" in context
    assert "operator/rightsizer/cli/main.py" in context
    for unwanted in ("tests/", "hack/", "benchmarks/", ".venv/", "helm/", "crds/"):
        assert not any(f.startswith(unwanted) for f in context), unwanted
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in context)


def test_the_build_context_makes_a_wheel_with_the_operator_and_its_console_script(tmp_path: Path) -> None:
    context = tmp_path / "context"
    for relative in _context_files():
        (context / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, context / relative)
    # The Dockerfile's `pip wheel .`, without the dependencies (their wheels come from the registry).
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet"]
    proc = subprocess.run(
        [*pip, "--wheel-dir", str(tmp_path / "w"), str(context)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [wheel] = (tmp_path / "w").glob("gpu_rightsizer-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        entry_points = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "rightsizer/cli/run.py" in names and "rightsizer/runtime/settings.py" in names
    assert "rightsizer = rightsizer.cli.main:main" in entry_points


def test_the_operator_runs_without_the_local_clusters_tooling(tmp_path: Path) -> None:
    # As in the image: the package less rightsizer.devcluster.
    shutil.copytree(
        ROOT / "operator" / "rightsizer", tmp_path / "rightsizer", ignore=shutil.ignore_patterns("devcluster")
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "rightsizer.cli.main", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "run the operator" in done.stdout and "fake-dcgm-exporter" not in done.stdout
    check = "import rightsizer.cli.main as m; print(m.__file__)"
    where = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=60)
    assert where.stdout.startswith(str(tmp_path)), "the copy, not the source tree, was run"
