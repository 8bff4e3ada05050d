"""`scb mam ...`: the MAM codec from the command line (create, parse), for operators and interop checks.

Seeds and side keys are read from files (mode 0600), never from the command line, where any user of the
machine could read them in the process list.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from mam_client.mam import (
    MODES,
    ChannelState,
    InvalidInput,
    InvalidMessage,
    create_channel,
    create_message,
    parse_message,
)
from scb.errors import DataError, ScbError, UsageError
from scb.files import atomic_write, read_secret_file


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    mam = sub.add_parser("mam", help="create and parse MAM v0 messages (byte-compatible with @iota/mam.js)")
    mam_sub = mam.add_subparsers(dest="mam_command", metavar="ACTION", required=True)

    create = mam_sub.add_parser("create", help="create messages on a channel, advancing its state file")
    create.add_argument("--seed-file", required=True, help="file holding the 81-tryte seed (mode 0600)")
    create.add_argument("--mode", required=True, choices=MODES)
    create.add_argument("--side-key-file", help="file holding the side key (restricted mode; mode 0600)")
    create.add_argument("--security", type=int, default=2, choices=(1, 2, 3), help="security level (default 2)")
    create.add_argument("--count", type=int, default=1,
                        help="leaves per Merkle tree for a new channel, a power of two (default 1)")
    create.add_argument("--state-file", required=True,
                        help="channel state (mam.js JSON, holds the seed: written with mode 0600); created on first use")
    create.add_argument("--message", action="append", required=True,
                        help="message trytes; repeat to create several messages in order")
    create.set_defaults(handler=cmd_create)

    parse = mam_sub.add_parser("parse", help="unmask and verify one payload; exit 1 if it is invalid")
    parse.add_argument("--root", required=True, help="81-tryte root the message was signed under")
    parse.add_argument("--side-key-file", help="file holding the side key (restricted mode; mode 0600)")
    parse.add_argument("payload_file", metavar="PAYLOAD_FILE", help="file holding the payload trytes, or - for stdin")
    parse.set_defaults(handler=cmd_parse)

    fetch = mam_sub.add_parser("fetch", help="read a channel from the tangle (falls back to the hub's archive)")
    fetch.add_argument("root", metavar="ROOT", help="81-tryte root of the first message to read")
    fetch.add_argument("--mode", choices=MODES, default="restricted", help="channel mode (default restricted)")
    fetch.add_argument("--side-key-file", help="file holding the side key (restricted mode; mode 0600)")
    fetch.add_argument("--all", action="store_true", help="follow nextRoot to the end of the channel")
    fetch.add_argument("--node", metavar="URL", help="IOTA node (default: [iota] node_url or the local node)")
    fetch.add_argument("--no-archive", action="store_true", help="read the node only, not the hub's archive")
    fetch.set_defaults(handler=cmd_fetch)

    service = sub.add_parser("mam-client", help="publish the outbox to the tangle; local HTTP API")
    service.set_defaults(handler=cmd_service)


def _load_or_create_state(args: argparse.Namespace, seed: str, side_key: str | None) -> ChannelState:
    path = Path(args.state_file)
    if not path.exists():
        return create_channel(seed, args.mode, side_key=side_key, security=args.security, count=args.count)
    state = ChannelState.loads(read_secret_file(path, "channel state"))
    if state.seed != seed:
        raise UsageError(f"state file {path} belongs to another seed than {args.seed_file}")
    if state.mode != args.mode or state.security != args.security:
        raise UsageError(
            f"state file {path} is a {state.mode} channel at security {state.security}; "
            f"--mode {args.mode} --security {args.security} do not match"
        )
    expected_key = create_channel(seed, args.mode, side_key=side_key, security=1).side_key
    if state.side_key != expected_key:
        raise UsageError(f"state file {path} uses another side key than the one given")
    return state


def cmd_create(args: argparse.Namespace) -> int:
    try:
        seed = read_secret_file(args.seed_file, "seed")
        side_key = read_secret_file(args.side_key_file, "side key") if args.side_key_file else None
        state = _load_or_create_state(args, seed, side_key)
        for message in args.message:
            created = create_message(state, message)
            # Write-ahead: the advanced state is durable before the payload is shown, so a crash can never
            # lead to a second message signed with the same one-time key.
            atomic_write(args.state_file, (state.dumps() + "\n").encode("ascii"), mode=0o600)
            print(json.dumps(created.to_json()), flush=True)
    except InvalidInput as exc:
        raise UsageError(str(exc)) from None
    return 0


def cmd_parse(args: argparse.Namespace) -> int:
    try:
        if args.payload_file == "-":
            payload = sys.stdin.read().strip()
        else:
            payload = Path(args.payload_file).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise UsageError(f"payload file {args.payload_file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"payload file {args.payload_file} cannot be read: {exc}") from None
    side_key = read_secret_file(args.side_key_file, "side key") if args.side_key_file else None
    try:
        parsed = parse_message(payload, args.root, side_key)
    except InvalidInput as exc:
        raise UsageError(str(exc)) from None
    except InvalidMessage as exc:
        raise DataError(f"invalid message: {exc}") from None
    print(json.dumps(parsed.to_json()))
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from mam_client.fetch import Skipped, fetch_chain
    from mam_client.mam import decode_address
    from mam_client.service import make_transport
    from mam_client.settings import iota_settings
    from scb.config import load_config

    config = load_config(args.config)
    iota = iota_settings(config)
    try:
        decode_address(args.root, args.mode)
    except InvalidInput as exc:
        raise UsageError(str(exc)) from None
    side_key = read_secret_file(args.side_key_file, "side key") if args.side_key_file else None
    if args.mode == "restricted" and side_key is None:
        raise UsageError("a restricted channel needs --side-key-file")
    transport = make_transport(replace(iota, node_url=args.node) if args.node else iota)
    archive = None if args.no_archive else _archive_reader(config)

    def report(skip: Skipped) -> None:
        print(f"scb: skipped bundle {skip.bundle_hash or '(archive)'} at {skip.address}: {skip.reason}",
              file=sys.stderr)

    count = 0
    def note(text: str) -> None:
        print(f"scb: {text}", file=sys.stderr)

    for item in fetch_chain(transport, args.root, args.mode, side_key, archive, follow=args.all, on_skip=report,
                            on_note=note):
        if item.source == "archive":
            print(f"scb: {item.address} is not on the node; read from the hub's archive", file=sys.stderr)
        print(json.dumps(item.to_json()), flush=True)
        count += 1
    if count == 0:
        raise DataError(f"no valid message at the address of root {args.root}")
    return 0


def _archive_reader(config):  # type: ignore[no-untyped-def]
    """The hub's archive (its database), if this machine has one; None elsewhere."""
    from mam_client.archive import archive_reader
    from scb.db import open_existing

    factory = open_existing(config)
    return archive_reader(factory) if factory is not None else None


def cmd_service(args: argparse.Namespace) -> int:
    from mam_client.service import run
    from scb.config import load_config

    return run(load_config(args.config))
