"""`scb mam create|parse` as a user runs them: a real subprocess of the installed `scb` command."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mam_client.mam import parse_message
from tests.conftest import run_node

SCB = [str(Path(sys.executable).with_name("scb"))]
SEED = "CLITEST" + "9" * 64 + "ZYXWVUTSRQ"


def scb(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(SCB + list(args), input=stdin, capture_output=True, text=True, timeout=120)


@pytest.fixture()
def secrets(tmp_path: Path) -> Path:
    (tmp_path / "seed").write_text(SEED + "\n")
    (tmp_path / "seed").chmod(0o600)
    (tmp_path / "key").write_text("SIDEKEY\n")
    (tmp_path / "key").chmod(0o600)
    return tmp_path


def test_create_several_then_continue_and_parse(secrets: Path) -> None:
    state = secrets / "state.json"
    base = ["mam", "create", "--seed-file", str(secrets / "seed"), "--mode", "restricted",
            "--side-key-file", str(secrets / "key"), "--security", "1", "--state-file", str(state)]
    first = scb(*base, "--message", "AAA", "--message", "BBB")
    assert first.returncode == 0, first.stderr
    lines = [json.loads(line) for line in first.stdout.splitlines()]
    assert [set(x) for x in lines] == [{"payload", "root", "address", "nextRoot"}] * 2
    assert lines[0]["nextRoot"] == lines[1]["root"]
    assert state.stat().st_mode & 0o777 == 0o600
    second = scb(*base, "--message", "CCC")
    third = json.loads(second.stdout)
    assert third["root"] == lines[1]["nextRoot"]
    assert parse_message(third["payload"], third["root"], "SIDEKEY").message == "CCC"
    # the state file is mam.js's: mam.js continues the channel where the CLI stopped
    js = run_node("mamjs_codec.js", {"ops": [{"op": "create", "state": json.loads(state.read_text()),
                                               "channel": None, "messages": ["DDD"]}]})["results"][0]
    assert js["created"][0]["root"] == third["nextRoot"]
    # parse via the CLI, from a file and from stdin
    (secrets / "payload").write_text(third["payload"])
    parsed = scb("mam", "parse", "--root", third["root"], "--side-key-file", str(secrets / "key"),
                 str(secrets / "payload"))
    assert parsed.returncode == 0 and json.loads(parsed.stdout)["message"] == "CCC"
    piped = scb("mam", "parse", "--root", third["root"], "--side-key-file", str(secrets / "key"), "-",
                stdin=third["payload"])
    assert json.loads(piped.stdout)["nextRoot"] == third["nextRoot"]


def test_invalid_message_exits_1_with_one_line(secrets: Path) -> None:
    out = scb("mam", "create", "--seed-file", str(secrets / "seed"), "--mode", "public", "--security", "1",
              "--state-file", str(secrets / "s.json"), "--message", "HELLO")
    msg = json.loads(out.stdout)
    tampered = msg["payload"][:200] + ("A" if msg["payload"][200] != "A" else "B") + msg["payload"][201:]
    res = scb("mam", "parse", "--root", msg["root"], "-", stdin=tampered)
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "invalid message" in res.stderr and "Traceback" not in res.stderr
    wrong_key = scb("mam", "parse", "--root", msg["root"], "--side-key-file", str(secrets / "key"), "-",
                    stdin=msg["payload"])
    assert wrong_key.returncode == 1


@pytest.mark.parametrize("payload, code", [("not trytes", 2), ("", 1)])
def test_unusable_input_exits_2(secrets: Path, payload: str, code: int) -> None:
    res = scb("mam", "parse", "--root", "A" * 81, "-", stdin=payload)
    assert res.returncode == code and "Traceback" not in res.stderr


def test_missing_file_and_bad_root_exit_2(secrets: Path) -> None:
    assert scb("mam", "parse", "--root", "A" * 81, str(secrets / "nope")).returncode == 2
    assert scb("mam", "parse", "--root", "short", "-", stdin="AAAA").returncode == 2


def test_open_seed_file_is_refused_with_advice(secrets: Path) -> None:
    (secrets / "seed").chmod(0o644)
    res = scb("mam", "create", "--seed-file", str(secrets / "seed"), "--mode", "public",
              "--state-file", str(secrets / "s.json"), "--message", "A")
    assert res.returncode == 2 and "chmod 600" in res.stderr
    assert not (secrets / "s.json").exists()


def test_state_of_another_seed_is_refused(secrets: Path) -> None:
    state = secrets / "s.json"
    assert scb("mam", "create", "--seed-file", str(secrets / "seed"), "--mode", "public", "--security", "1",
               "--state-file", str(state), "--message", "A").returncode == 0
    before = state.read_text()
    (secrets / "seed2").write_text("B" * 81)
    os.chmod(secrets / "seed2", 0o600)
    res = scb("mam", "create", "--seed-file", str(secrets / "seed2"), "--mode", "public", "--security", "1",
              "--state-file", str(state), "--message", "A")
    assert res.returncode == 2 and "another seed" in res.stderr
    assert state.read_text() == before


def test_seed_never_on_stdout_or_stderr(secrets: Path) -> None:
    res = scb("mam", "create", "--seed-file", str(secrets / "seed"), "--mode", "public", "--security", "1",
              "--state-file", str(secrets / "s.json"), "--message", "A", "--message", "lowercase")
    assert res.returncode == 2
    assert SEED not in res.stdout + res.stderr
    assert len(res.stdout.splitlines()) == 1  # the first message was created and its state kept
