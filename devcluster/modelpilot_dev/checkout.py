"""Where the modelpilot source checkout is: the one place the development package
looks for it (the pins in hack/tools, the CRD in manifests/, the samples, the model
store). The operator itself never needs a checkout.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

ENV_CHECKOUT = "MODELPILOT_CHECKOUT"
# What only a modelpilot checkout has at its top.
_MARKERS = ("pyproject.toml", "hack/tools/go.mod", "operator/modelpilot/__init__.py")


class NoCheckout(RuntimeError):
    pass


def is_checkout(path: Path) -> bool:
    return all((path / marker).exists() for marker in _MARKERS)


@cache
def checkout_root() -> Path:
    """$MODELPILOT_CHECKOUT, else the working directory or the nearest parent of it that
    is a checkout (make, pytest and the bench all run from the top)."""
    env = os.environ.get(ENV_CHECKOUT)
    if env:
        root = Path(env).resolve()
        if not is_checkout(root):
            raise NoCheckout(f"${ENV_CHECKOUT}={env} is not a modelpilot checkout")
        return root
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if is_checkout(candidate):
            return candidate
    raise NoCheckout(
        f"{here} is not inside a modelpilot checkout: run from the checkout, or set "
        f"${ENV_CHECKOUT} to its path"
    )


def hack_tools() -> Path:
    return checkout_root() / "hack" / "tools"


def manifests() -> Path:
    return checkout_root() / "manifests"


def model_store() -> Path:
    return checkout_root() / "model-store"
