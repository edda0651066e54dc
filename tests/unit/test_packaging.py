"""The production image stays lean and pinned: runtime dependencies apart from the sandbox's, every one of them
pinned in deploy/image/constraints.txt, the operator importable without the sandbox extra, and the Dockerfile
multi-stage, non-root and hadolint-clean."""

from __future__ import annotations

import importlib.metadata
import json
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parents[2]
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
CONSTRAINTS = ROOT / "deploy" / "image" / "constraints.txt"
DOCKERFILE = ROOT / "Dockerfile"
SANDBOX_ONLY_DISTRIBUTIONS = {"kmock", "cel-python"}
SANDBOX_ONLY_IMPORTS = ("kmock", "celpy")
# Modules that need the sandbox extra: the embedded API server and the sandbox that runs it.
SANDBOX_ONLY_MODULES = ("imagescan.apiserver", "imagescan.sandbox")


def _requirements(group: str | None = None) -> list[Requirement]:
    project = PYPROJECT["project"]
    listed = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return [Requirement(text) for text in listed]


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{line}: the image's versions are pinned with =="
        pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def test_runtime_and_sandbox_dependencies_are_apart() -> None:
    runtime = {canonicalize_name(r.name) for r in _requirements()}
    assert {"kopf", "kubernetes", "boto3", "botocore", "pydantic", "pyyaml", "aiohttp", "cryptography"} <= runtime
    assert not runtime & SANDBOX_ONLY_DISTRIBUTIONS, "the image must not install the sandbox's dependencies"
    assert {canonicalize_name(r.name) for r in _requirements("sandbox")} == SANDBOX_ONLY_DISTRIBUTIONS
    # README: `pip install -e '.[test]' && imagescan sandbox` keeps working.
    (itself,) = [r for r in _requirements("test") if canonicalize_name(r.name) == "imagescan-operator"]
    assert itself.extras == {"sandbox"}


def _closure(roots: list[Requirement]) -> set[str]:
    """The distributions these requirements pull in, as installed here (markers evaluated for this Python)."""
    seen: set[str] = set()
    todo = [r for r in roots if r.marker is None or r.marker.evaluate({"extra": ""})]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        for text in importlib.metadata.requires(requirement.name) or []:
            child = Requirement(text)
            if child.marker is None or child.marker.evaluate({"extra": ""}):
                todo.append(child)
    return seen


def test_constraints_pin_every_runtime_dependency() -> None:
    pins = _pins()
    for requirement in _requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is a runtime dependency but not pinned in {CONSTRAINTS.name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} does not satisfy pyproject's {requirement}")
    # Their dependencies too (as this environment resolves them; the image build's `pip check` is the last word).
    missing = _closure(_requirements()) - set(pins)
    assert not missing, f"not pinned in {CONSTRAINTS.name}: {sorted(missing)}"
    assert not set(pins) & SANDBOX_ONLY_DISTRIBUTIONS
    assert "imagescan-operator" not in pins


# Prepended to code run in a fresh interpreter: kmock and celpy cannot be imported, as in the production image.
BLOCK_SANDBOX = f"""
import importlib.abc, sys

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {set(SANDBOX_ONLY_IMPORTS)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Absent())
"""
_IMPORT_EVERY_MODULE = """
import importlib, json, pkgutil
import imagescan
failed = {}
for module in pkgutil.walk_packages(imagescan.__path__, "imagescan."):
    if module.name.endswith(".__main__"):  # runs a command when imported
        continue
    try:
        importlib.import_module(module.name)
    except ModuleNotFoundError as exc:
        failed[module.name] = exc.name
print(json.dumps(failed))
"""


def _python_without_sandbox(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK_SANDBOX + code], capture_output=True, text=True,
                          timeout=300, check=False, cwd=ROOT)


def test_every_runtime_module_imports_without_the_sandbox_extra() -> None:
    result = _python_without_sandbox(_IMPORT_EVERY_MODULE)
    assert result.returncode == 0, result.stderr[-3000:]
    failed: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    runtime_failures = {m: name for m, name in failed.items() if not m.startswith(SANDBOX_ONLY_MODULES)}
    assert not runtime_failures, f"runtime modules that need the sandbox extra: {runtime_failures}"
    # Only a sandbox dependency may be what is missing, and the sandbox modules do need it (else the extra is moot).
    assert set(failed.values()) <= set(SANDBOX_ONLY_IMPORTS)
    assert "imagescan.sandbox" in failed


def test_imagescan_run_works_and_sandbox_names_the_extra_without_it() -> None:
    run = _python_without_sandbox("from imagescan import cli; cli.main(['run', '--help'])")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "--all-namespaces" in run.stdout
    sandbox = _python_without_sandbox("import sys; from imagescan import cli; sys.exit(cli.main(['sandbox']))")
    assert sandbox.returncode == 2, sandbox.stderr[-3000:]
    assert "Traceback" not in sandbox.stderr
    assert "imagescan-operator[sandbox]" in sandbox.stderr


def _stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped), one list per stage."""
    stages: list[list[str]] = []
    logical = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        logical += line[:-1] + " " if line.endswith("\\") else line
        if line.endswith("\\"):
            continue
        if logical.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(logical)
        logical = ""
    return stages


def test_dockerfile_is_multi_stage_pinned_and_non_root() -> None:
    *builders, final = _stages()
    assert builders, "multi-stage: dependencies are installed in a stage of their own"
    build = "\n".join(builders[-1])
    assert "deploy/image/constraints.txt" in build and "--no-deps" in build and " check" in build
    assert any(line.startswith("COPY --from=builder ") for line in final)
    # No installing in the final stage: everything it runs comes from the builder's virtualenv.
    assert not [line for line in final if line.startswith("RUN") and " install" in line]
    (user,) = [line.split()[1] for line in final if line.startswith("USER ")]
    uid = user.split(":")[0]
    assert uid.isdigit() and uid != "0", "a numeric non-root user, so the kubelet can check runAsNonRoot"


def test_image_defaults_are_the_deployments_args() -> None:
    (cmd,) = [line for line in _stages()[-1] if line.startswith("CMD ")]
    (entrypoint,) = [line for line in _stages()[-1] if line.startswith("ENTRYPOINT ")]
    assert json.loads(entrypoint.split(" ", 1)[1]) == ["imagescan", "run"]
    deployment = yaml.safe_load((ROOT / "deploy" / "base" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert json.loads(cmd.split(" ", 1)[1]) == container["args"]


def _hadolint() -> str | None:
    scripts = pathlib.Path(sysconfig.get_path("scripts")) / "hadolint"
    return str(scripts) if scripts.exists() else shutil.which("hadolint")


@pytest.mark.skipif(_hadolint() is None, reason="hadolint is not installed (pip install -e '.[test]')")
def test_dockerfile_passes_hadolint() -> None:
    hadolint = _hadolint()
    assert hadolint is not None
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_runtime_module_imports_the_sandbox_later_either() -> None:
    """Imports inside functions escape the import check above: none of the operator's modules may import the
    sandbox's dependencies or modules anywhere, but `imagescan sandbox`'s guarded import in cli.py."""
    import ast

    allowed = {("imagescan.cli", "imagescan.sandbox")}
    package = ROOT / "operator" / "imagescan"
    found: list[tuple[str, str]] = []
    for path in sorted(package.rglob("*.py")):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__")
        if module.startswith(SANDBOX_ONLY_MODULES):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                if name.startswith(SANDBOX_ONLY_MODULES) or name.split(".")[0] in SANDBOX_ONLY_IMPORTS:
                    found.append((module, name))
    assert set(found) == allowed, sorted(set(found) ^ allowed)
