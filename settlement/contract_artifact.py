"""Where the compiled SolarProperty lives: the one place that locates ``contracts/build/SolarProperty*.json``.

The hub deploys and talks to the contract from this committed artifact (ABI and bytecode), so a Raspberry Pi
running the hub needs no Solidity compiler. ``contracts/compile.js`` writes it; a test recompiles and checks it.

Two versions are committed: ``SolarProperty.json`` is version 2, the one the hub deploys; ``SolarProperty.v1.json``
is version 1 (built from contracts/SolarProperty.sol at commit 7fa2a72), kept so that the hub can still read and
settle a system registered on a version-1 contract (docs/contract.md "Version 2").
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from scb.errors import ConfigError

BUILD_DIR: Path = Path(__file__).resolve().parent.parent / "contracts" / "build"
ARTIFACT_PATH: Path = BUILD_DIR / "SolarProperty.json"
"""contracts/build/SolarProperty.json, resolved relative to this package (repository layout, editable install)."""

#: the version this SCB deploys (the contract's `VERSION` constant)
CURRENT_VERSION = 2
#: version -> its committed artifact
ARTIFACT_PATHS: dict[int, Path] = {1: BUILD_DIR / "SolarProperty.v1.json", CURRENT_VERSION: ARTIFACT_PATH}

_REQUIRED_KEYS = ("contractName", "abi", "bytecode", "deployedBytecode", "compiler", "settings")


class ArtifactError(ConfigError):
    """The artifact is missing or malformed (the repository checkout is incomplete)."""


@lru_cache(maxsize=4)
def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ArtifactError(f"contract artifact not found at {path}; run `node contracts/compile.js`") from exc
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"contract artifact at {path} is not valid JSON: {exc}") from exc
    missing = [key for key in _REQUIRED_KEYS if key not in data]
    if missing:
        raise ArtifactError(f"contract artifact at {path} lacks {', '.join(missing)}")
    return data


def load_artifact(version: int = CURRENT_VERSION) -> dict[str, Any]:
    """The SolarProperty artifact of `version` (default: the one the hub deploys): ``abi``, ``bytecode``,
    ``deployedBytecode`` (0x hex), ``compiler``, ``settings``.

    Returns a fresh copy each call (callers may mutate it); each file is read once per process.
    """
    if version not in ARTIFACT_PATHS:
        raise ArtifactError(f"SolarProperty version {version} is not one this SCB knows "
                            f"({', '.join(str(v) for v in sorted(ARTIFACT_PATHS))}): upgrade SCB")
    return json.loads(json.dumps(_load(ARTIFACT_PATHS[version])))
