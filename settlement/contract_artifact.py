"""Where the compiled SolarProperty lives: the one place that locates ``contracts/build/SolarProperty.json``.

The hub deploys and talks to the contract from this committed artifact (ABI and bytecode), so a Raspberry Pi
running the hub needs no Solidity compiler. ``contracts/compile.js`` writes it; a test recompiles and checks it.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from scb.errors import ConfigError

ARTIFACT_PATH: Path = Path(__file__).resolve().parent.parent / "contracts" / "build" / "SolarProperty.json"
"""contracts/build/SolarProperty.json, resolved relative to this package (repository layout, editable install)."""

_REQUIRED_KEYS = ("contractName", "abi", "bytecode", "deployedBytecode", "compiler", "settings")


class ArtifactError(ConfigError):
    """The artifact is missing or malformed (the repository checkout is incomplete)."""


@lru_cache(maxsize=1)
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


def load_artifact() -> dict[str, Any]:
    """The SolarProperty artifact: ``abi``, ``bytecode``, ``deployedBytecode`` (0x hex), ``compiler``, ``settings``.

    Returns a fresh copy each call (callers may mutate it); the file is read once per process.
    """
    return json.loads(json.dumps(_load(ARTIFACT_PATH)))
