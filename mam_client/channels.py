"""Channel set-up on the hub: seed and side-key files, and the channel's row in the database.

A channel's seed is generated on first use (81 trytes from `secrets`, the OS CSPRNG) into a 0600 file and is
never logged. The database holds the rest of the state. If a seed file exists but the database has no state for
it, the hub refuses to start the channel: starting over at key index 0 would sign new messages with one-time keys
already used, which lets anyone forge messages on the channel.
"""
from __future__ import annotations

import json
import secrets

from sqlalchemy.orm import Session

from mam_client.crypto.trits import ALPHABET
from mam_client.mam import ChannelState, channel_root, create_channel
from mam_client.models import Channel
from mam_client.settings import ChannelSettings
from scb.errors import ConfigError
from scb.files import read_secret_file, write_secret_file


def random_trytes(n: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(n))


def load_secrets(settings: ChannelSettings) -> tuple[str, str | None]:
    seed = read_secret_file(settings.seed_file, f"seed of channel {settings.name}")
    key = None
    if settings.side_key_file is not None:
        key = read_secret_file(settings.side_key_file, f"side key of channel {settings.name}")
    return seed, key


def ensure_channel(session: Session, settings: ChannelSettings) -> Channel:
    """Return the channel's row, creating seed, side key and row on first use (in the caller's transaction)."""
    row = session.get(Channel, settings.name)
    if row is not None:
        if row.mode != settings.mode or row.security != settings.security:
            raise ConfigError(
                f"channel {settings.name} was created as {row.mode} at security {row.security}; the configuration "
                f"now says {settings.mode} at security {settings.security}. A channel cannot change these: "
                "configure a new channel name instead"
            )
        return row
    if settings.seed_file.exists():
        raise ConfigError(
            f"seed file {settings.seed_file} exists but the database has no state for channel {settings.name}. "
            "Restore the database from its backup (docs/operations.md), or move the seed file away to start a "
            "new channel; reusing the seed from index 0 would reuse one-time signing keys"
        )
    if settings.side_key_file is not None and not settings.side_key_file.exists():
        write_secret_file(settings.side_key_file, random_trytes(81))
    write_secret_file(settings.seed_file, random_trytes(81))
    seed, key = load_secrets(settings)
    state = create_channel(seed, settings.mode, side_key=key, security=settings.security, count=settings.count)
    row = Channel(name=settings.name, mode=settings.mode, security=settings.security,
                  first_root=channel_root(state), state_json=json.dumps(state.to_json(include_secrets=False)))
    session.add(row)
    session.flush()
    return row


def channel_state(row: Channel, seed: str, side_key: str | None) -> ChannelState:
    return ChannelState.from_json(json.loads(row.state_json), seed=seed, side_key=side_key)
