"""`scb db`: the hub database and its migrations (every component's tables, so it lives in the application layer)."""
from __future__ import annotations

import argparse

from scb.config import load_config


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    db = subparsers.add_parser("db", help="the project database: migrate, show or check its schema version",
                               description="Every SCB process migrates the database when it starts; these "
                               "commands do it by hand and help developers add migrations (docs/database.md).")
    actions = db.add_subparsers(dest="db_action", metavar="ACTION")
    db.set_defaults(handler=lambda _args: _help(db))

    up = actions.add_parser("upgrade", help="migrate the database to the newest schema (or --revision)")
    up.add_argument("--url", help="database URL (default: the configured database)")
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    up.set_defaults(handler=_upgrade)

    cur = actions.add_parser("current", help="print the database's revision and the newest one")
    cur.add_argument("--url", help="database URL (default: the configured database)")
    cur.set_defaults(handler=_current)

    chk = actions.add_parser("check", help="exit 1 if the models differ from the migrations (developers)")
    chk.set_defaults(handler=_check)

    rev = actions.add_parser("revision", help="autogenerate the next migration from changed models (developers)")
    rev.add_argument("-m", "--message", required=True, help="what changed")
    rev.set_defaults(handler=_revision)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _url(args: argparse.Namespace) -> str:
    return args.url or load_config(args.config).database_url


def _safe(url: str) -> str:
    """The URL without a password, for printing."""
    from scb.db import safe_url

    return safe_url(url)


def _upgrade(args: argparse.Namespace) -> int:
    from scb.migrate import current_revision, upgrade

    url = _url(args)
    before = current_revision(url)
    upgrade(url, args.revision)
    after = current_revision(url)
    print(f"{_safe(url)}: {before or 'empty'} -> {after}" if before != after else f"{_safe(url)}: at {after}")
    return 0


def _current(args: argparse.Namespace) -> int:
    from scb.migrate import current_revision, head_revision

    url = _url(args)
    current, head = current_revision(url), head_revision()
    state = "up to date" if current == head else "needs `scb db upgrade`" if current else "not created yet"
    print(f"{_safe(url)}: revision {current or '-'}, newest {head} ({state})")
    return 0


def _check(_args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from hub.database import load_models
    from scb.db import make_engine
    from scb.migrate import schema_diff, upgrade

    load_models()

    with tempfile.TemporaryDirectory(prefix="scb-check-") as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'check.sqlite3'}")
        try:
            upgrade(engine)
            with engine.connect() as conn:
                diff = schema_diff(conn)
        finally:
            engine.dispose()
    if diff:
        print(f"the models differ from the migrations in {len(diff)} place(s); add a revision with "
              "`scb db revision -m \"...\"`:")
        for d in diff:
            print(f"  {d}")
        return 1
    print("the migrations produce exactly the models' schema")
    return 0


def _revision(args: argparse.Namespace) -> int:
    from hub.database import load_models
    from scb.migrate import new_revision

    load_models()

    path = new_revision(args.message)
    print(f"wrote {path}; review it, then commit it with the model change")
    return 0
