"""Build the pinned control-plane binaries for the simulated cluster.

The versions live only in the Go modules under `hack/tools/` (one module per upstream
release, so each binary builds against exactly the dependency versions its release
chose; sharing one module would let Go's version selection upgrade, say, grpc in
kube-apiserver because etcd wants a newer one). Binaries go to a cache outside the work
tree, `~/.cache/modelpilot/tools/<name>-<version>/` (or `$MODELPILOT_TOOLS_DIR`), and are
built only when missing. `$KUBEBUILDER_ASSETS`, when it holds kube-apiserver and etcd,
provides those two instead.

    python -m modelpilot_dev.tools            # build what is missing, with timings
    python -m modelpilot_dev.tools --path kubectl
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from modelpilot_dev.checkout import hack_tools

_K8S_VERSION_PKG = "k8s.io/component-base/version"


@dataclass(frozen=True)
class Tool:
    """One binary: which hack/tools module pins it and which main package to build."""

    name: str
    module_dir: str  # relative to hack/tools
    module: str  # the required module whose version is the pin
    package: str
    ldflags: Callable[[str], list[str]] = field(default=lambda _version: [])


def _k8s_ldflags(version: str) -> list[str]:
    # Without these the binaries report v0.0.0-master, and kubectl/clients then warn
    # about version skew.
    major, minor = version.lstrip("v").split(".")[:2]
    return [
        f"-X {_K8S_VERSION_PKG}.gitVersion={version}",
        f"-X {_K8S_VERSION_PKG}.gitMajor={major}",
        f"-X {_K8S_VERSION_PKG}.gitMinor={minor}",
    ]


TOOLS: tuple[Tool, ...] = (
    *(
        Tool(name, ".", "k8s.io/kubernetes", f"k8s.io/kubernetes/cmd/{name}", _k8s_ldflags)
        for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
    ),
    Tool("etcd", "etcd", "go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/server/v3"),
    Tool("kwok", "kwok", "sigs.k8s.io/kwok", "sigs.k8s.io/kwok/cmd/kwok"),
    Tool(
        "helm",
        "helm",
        "helm.sh/helm/v3",
        "helm.sh/helm/v3/cmd/helm",
        # Helm otherwise reports only its minor series ("v3.22").
        lambda v: [f"-X helm.sh/helm/v3/internal/version.version={v}"],
    ),
    Tool(
        "traefik",
        "traefik",
        "github.com/traefik/traefik/v3",
        "github.com/traefik/traefik/v3/cmd/traefik",
        # Stripped (245 MB -> 178 MB); stamped, or it reports "dev".
        lambda v: ["-s", "-w", f"-X github.com/traefik/traefik/v3/pkg/version.Version={v}"],
    ),
)
TOOLS_BY_NAME = {tool.name: tool for tool in TOOLS}

# Data read from module sources rather than built: copied into the cache so that starting
# the cluster needs neither Go nor the module cache.
GATEWAY_API = ("gateway-api", "sigs.k8s.io/gateway-api", "config/crd/standard")
# Traefik's own CRDs (TraefikService mirrors a shadow), as its module ships them.
TRAEFIK_CRDS = "docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml"
KWOK_STAGES = (
    "kustomize/stage/node/fast",
    "kustomize/stage/node/heartbeat",
    "kustomize/stage/pod/fast",
)

# The binaries KUBEBUILDER_ASSETS may provide (controller-runtime's envtest layout).
_ENVTEST_PROVIDED = ("kube-apiserver", "etcd")


class ToolError(RuntimeError):
    pass


# --- go.mod reading -----------------------------------------------------------------

_REQUIRE_LINE = re.compile(r"^\s*(?:require\s+)?(?P<path>[^\s()]+)\s+(?P<version>v\S+)")


def read_go_mod(module_dir: str) -> tuple[dict[str, str], str | None]:
    """The direct requirements and the `toolchain` line of one hack/tools module."""
    text = (hack_tools() / module_dir / "go.mod").read_text()
    requires: dict[str, str] = {}
    toolchain: str | None = None
    in_block = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("toolchain "):
            toolchain = line.split()[1]
        if line.startswith("require ("):
            in_block = True
            continue
        if in_block and line == ")":
            in_block = False
            continue
        if (in_block or line.startswith("require ")) and "// indirect" not in line:
            m = _REQUIRE_LINE.match(line)
            if m:
                requires[m["path"]] = m["version"]
    return requires, toolchain


def version_of(tool: Tool) -> str:
    requires, _ = read_go_mod(tool.module_dir)
    try:
        return requires[tool.module]
    except KeyError:
        raise ToolError(
            f"hack/tools/{tool.module_dir}/go.mod does not require {tool.module}"
        ) from None


# --- locations ----------------------------------------------------------------------


def tools_dir() -> Path:
    env = os.environ.get("MODELPILOT_TOOLS_DIR")
    return Path(env) if env else Path.home() / ".cache" / "modelpilot" / "tools"


def _envtest_binary(name: str) -> Path | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if not assets or name not in _ENVTEST_PROVIDED:
        return None
    if all((Path(assets) / n).is_file() for n in _ENVTEST_PROVIDED):
        return Path(assets) / name
    return None


def binary_path(name: str) -> Path:
    """Where the binary is or will be (no check that it exists)."""
    provided = _envtest_binary(name)
    if provided is not None:
        return provided
    tool = TOOLS_BY_NAME[name]
    return tools_dir() / f"{name}-{version_of(tool)}" / name


def gateway_api_crd_dir() -> Path:
    module_dir, module, _ = GATEWAY_API
    version = read_go_mod(module_dir)[0][module]
    return tools_dir() / f"gateway-api-{version}" / "crds"


def traefik_crd_file() -> Path:
    return binary_path("traefik").parent / "crds" / Path(TRAEFIK_CRDS).name


def kwok_stage_dir() -> Path:
    return binary_path("kwok").parent / "stages"


# What a running control plane needs (kubectl and helm are for people and tests).
CONTROL_PLANE = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "gateway-api",
    "kwok-stages",
)


def prometheus_version() -> str:
    """The Debian package version pinned in hack/tools/prometheus.txt."""
    lines = (hack_tools() / "prometheus.txt").read_text().splitlines()
    return next(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def prometheus_binary() -> Path:
    version = prometheus_version().replace("+", "_").replace("~", "_")
    return tools_dir() / f"prometheus-{version}" / "usr" / "bin" / "prometheus"


def missing(names: Iterable[str] | None = None) -> list[str]:
    """Which of `names` (default: everything) are not built or fetched yet."""
    present: dict[str, Callable[[], bool]] = {
        "gateway-api": lambda: gateway_api_crd_dir().is_dir(),
        "kwok-stages": lambda: kwok_stage_dir().is_dir(),
        "traefik-crds": lambda: traefik_crd_file().is_file(),
        "prometheus": lambda: prometheus_binary().is_file(),
    }
    wanted = list(names) if names is not None else [*TOOLS_BY_NAME, *present]
    return [
        name
        for name in wanted
        if not (present[name]() if name in present else binary_path(name).is_file())
    ]


def go_binary() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    fallback = Path("/usr/local/go/bin/go")
    return str(fallback) if fallback.is_file() else None


# --- building -----------------------------------------------------------------------


def _go_env(module_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    # readonly: build exactly what go.mod/go.sum pin, and fail (rather than quietly
    # edit the work tree) if they are incomplete.
    env["GOFLAGS"] = "-mod=readonly"
    _, toolchain = read_go_mod(module_dir)
    if toolchain:
        # Some distributions set GOTOOLCHAIN=local; a module that names a newer toolchain
        # gets it fetched from the module proxy (once, then cached).
        env["GOTOOLCHAIN"] = toolchain
    return env


def _run_go(args: list[str], module_dir: str) -> str:
    go = go_binary()
    if go is None:
        raise ToolError("the go command is not installed (needed to build the test tools)")
    proc = subprocess.run(
        [go, *args],
        cwd=hack_tools() / module_dir,
        env=_go_env(module_dir),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ToolError(
            f"go {' '.join(args)} (in hack/tools/{module_dir}) failed:\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


def module_source(module_dir: str, module: str) -> Path:
    """The module's extracted source in the Go module cache (downloaded if needed)."""
    info = json.loads(_run_go(["mod", "download", "-json", module], module_dir))
    return Path(info["Dir"])


def build(tool: Tool) -> Path:
    target = binary_path(tool.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    ldflags = " ".join(tool.ldflags(version_of(tool)))
    _run_go(
        ["build", "-trimpath", "-ldflags", ldflags, "-o", str(partial), tool.package],
        tool.module_dir,
    )
    partial.replace(target)  # atomic: an interrupted build never looks finished
    return target


def _copy_tree_atomically(sources: Iterable[tuple[Path, str]], target: Path) -> None:
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    # Only the manifests: the module folders also hold Go embeds, docs and test inputs.
    skip = shutil.ignore_patterns("testdata", "*.go", "*.md", "kustomization.yaml")
    for src, rel in sources:
        shutil.copytree(src, partial / rel, ignore=skip)
    for path in partial.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # module cache files are read-only
    partial.replace(target)


def fetch_gateway_api() -> Path:
    module_dir, module, sub = GATEWAY_API
    target = gateway_api_crd_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    _copy_tree_atomically([(module_source(module_dir, module) / sub, ".")], target)
    return target


def fetch_traefik_crds() -> Path:
    tool = TOOLS_BY_NAME["traefik"]
    source = module_source(tool.module_dir, tool.module) / TRAEFIK_CRDS
    target = traefik_crd_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    partial.chmod(0o644)  # module cache files are read-only
    partial.replace(target)
    return target


def fetch_kwok_stages() -> Path:
    tool = TOOLS_BY_NAME["kwok"]
    source = module_source(tool.module_dir, tool.module)
    target = kwok_stage_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    _copy_tree_atomically(
        [(source / rel, rel.removeprefix("kustomize/stage/")) for rel in KWOK_STAGES], target
    )
    return target


def fetch_prometheus() -> Path:
    """Debian's prometheus package, unpacked into the tools cache (no install: the
    package's service files stay inert in that folder)."""
    version = prometheus_version()
    target = prometheus_binary().parents[2]
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)

    def download() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["apt-get", "download", f"prometheus={version}"],
            cwd=partial,
            capture_output=True,
            text=True,
            check=False,
        )

    fetched = download()
    if fetched.returncode != 0:  # a machine whose package lists were never fetched
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False)
        fetched = download()
    if fetched.returncode != 0:
        raise ToolError(
            f"apt-get download prometheus={version} failed (pin in hack/tools/"
            f"prometheus.txt; `apt-cache policy prometheus` lists what is served):\n"
            f"{fetched.stderr[-2000:]}"
        )
    (package,) = partial.glob("prometheus_*.deb")
    subprocess.run(["dpkg-deb", "-x", str(package), str(partial)], check=True)
    package.unlink()
    partial.replace(target)
    return prometheus_binary()


def ensure_all(log: Callable[[str], None] = print) -> dict[str, float]:
    """Build or fetch everything missing, one at a time (builds use every core)."""
    timings: dict[str, float] = {}
    steps: list[tuple[str, str, Callable[[], Path]]] = [
        (tool.name, "building", functools.partial(build, tool)) for tool in TOOLS
    ]
    steps += [
        ("gateway-api", "fetching", fetch_gateway_api),
        ("kwok-stages", "fetching", fetch_kwok_stages),
        ("traefik-crds", "fetching", fetch_traefik_crds),
        ("prometheus", "fetching", fetch_prometheus),
    ]
    todo = set(missing())
    for name, verb, step in steps:
        if name not in todo:
            log(f"{name}: cached")
            continue
        log(f"{name}: {verb} ...")
        started = time.monotonic()
        path = step()
        timings[name] = time.monotonic() - started
        log(f"{name}: done in {timings[name]:.1f}s -> {path}")
    return timings


# --- keeping go.mod's replace list true to k8s.io/kubernetes -------------------------


def staging_replaces() -> list[str]:
    """The replace lines hack/tools/go.mod needs: k8s.io/kubernetes maps its staging
    modules to local folders, so `go install` refuses it; a wrapper module points each
    at the published module of the matching v0 version instead."""
    version = read_go_mod(".")[0]["k8s.io/kubernetes"]
    staging_version = "v0." + version.lstrip("v").split(".", 1)[1]
    text = (module_source(".", "k8s.io/kubernetes") / "go.mod").read_text()
    modules = re.findall(r"^\s*(k8s\.io/\S+)\s+=>\s+\./staging/", text, flags=re.M)
    return [f"{m} => {m} {staging_version}" for m in modules]


def check_replaces() -> list[str]:
    """Replace lines that hack/tools/go.mod lacks (empty when in sync)."""
    text = (hack_tools() / "go.mod").read_text()
    have = {" ".join(line.split()) for line in text.splitlines()}
    return [line for line in staging_replaces() if line not in have]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelpilot_dev tools",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--path", metavar="NAME", help="print where binary NAME is and exit")
    parser.add_argument("--print-dir", action="store_true", help="print the tools cache dir")
    parser.add_argument(
        "--print-replaces",
        action="store_true",
        help="print the replace block hack/tools/go.mod needs",
    )
    parser.add_argument(
        "--check-replaces",
        action="store_true",
        help="fail if hack/tools/go.mod misses a staging replace",
    )
    args = parser.parse_args(argv)
    if args.print_dir:
        print(tools_dir())
        return 0
    if args.path:
        print(binary_path(args.path))
        return 0
    if args.print_replaces:
        print("replace (\n" + "".join(f"\t{line}\n" for line in staging_replaces()) + ")")
        return 0
    if args.check_replaces:
        lacking = check_replaces()
        for line in lacking:
            print(f"hack/tools/go.mod lacks: replace {line}", file=sys.stderr)
        return 1 if lacking else 0
    started = time.monotonic()
    try:
        timings = ensure_all()
    except ToolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"tools in {tools_dir()}: made {len(timings)} in {time.monotonic() - started:.1f}s total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
