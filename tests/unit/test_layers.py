"""The operator's layers import one way, and the shipped package holds no development
machinery: read from the source (every import statement, at any depth), not from what
happens to be imported at test time."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import modelpilot

PACKAGE = Path(modelpilot.__path__[0])

# What each part of the operator may import from modelpilot (itself always).
ALLOWED: dict[str, set[str]] = {
    "api": set(),
    "runtimes": {"api"},
    "render": {"api", "runtimes"},
    "rollout": {"api"},
    "analysis": {"api"},
    "k8s": {"api", "runtimes"},
    "probes": set(),
    "store": set(),
    "handlers": {"api", "runtimes", "render", "rollout", "analysis", "k8s", "probes"},
    "cli": {
        "",
        "api",
        "runtimes",
        "render",
        "rollout",
        "analysis",
        "k8s",
        "probes",
        "handlers",
        "store",
    },
}


def part_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py") if relative.parts[0] != "__init__.py" else ""


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def modelpilot_parts(modules: set[str]) -> set[str]:
    parts = set()
    for module in modules:
        if module == "modelpilot":
            parts.add("")
        elif module.startswith("modelpilot."):
            parts.add(module.split(".")[1])
    return parts


def test_every_layer_imports_only_what_sits_below_it() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 30  # the walk found the package
    wrong = []
    for path in sources:
        part = part_of(path)
        if part == "":
            continue  # modelpilot/__init__.py: the version only
        assert part in ALLOWED, f"{path}: a new part of the package needs a rule here"
        modules = imported_modules(path)
        known = {p for p in modelpilot_parts(modules) if p in ALLOWED or p == ""}
        for other in sorted(known - {part} - ALLOWED[part]):
            wrong.append(f"{path.relative_to(PACKAGE)} imports modelpilot.{other}")
    assert wrong == []


def test_the_operator_never_imports_the_development_package() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if any(m.split(".")[0] == "modelpilot_dev" for m in imported_modules(path))
    ]
    assert offenders == []


def test_the_package_holds_no_development_module() -> None:
    modules = [m.name for m in pkgutil.walk_packages(modelpilot.__path__, "modelpilot.")]
    assert "modelpilot.handlers.manage" in modules  # the walk sees the package
    dev_words = ("sim", "demo", "standin", "local_server", "memory_cluster", "tools")
    assert [m for m in modules if any(w in m.split(".")[-1] for w in dev_words)] == []


def test_the_layer_rules_catch_an_upward_import(tmp_path: Path) -> None:
    # The check above must be able to fail: k8s importing render is what it exists for.
    source = tmp_path / "observe.py"
    source.write_text("from modelpilot.render import names\nimport modelpilot.rollout.types\n")
    assert modelpilot_parts(imported_modules(source)) - ALLOWED["k8s"] == {"render", "rollout"}
