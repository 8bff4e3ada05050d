"""`scb verify`: golden proof files (valid and invalid, each failing at its step), verification by address on a
hub (node, archive fallback, forged bundles, unknown addresses, unsettled readings), and the command line."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from energy_manager.models import StoredReading
from hub.verification import chain_view_factory, export_proof, verify_hub_address
from mam_client.channels import load_secrets
from mam_client.models import OutboxMessage
from mam_client.settings import mam_settings
from mam_client.transport import FoundBundle
from settlement.verify import CANNOT_CHECK, INVALID, VALID, Report, verify_proof_file
from scb.config import Config
from tests.conftest import REPO, run_node
from tests.settlement import golden
from tests.settlement.conftest import START_MS, Anvil, Hub, start_anvil, write_toml

HOUR_MS = 3600_000


def failed_step(report: Report) -> str | None:
    failed = [s for s in report.steps if s.ok is False]
    return failed[0].name if failed else None


# ------------------------------------------------------------------------------------------------ golden files


@pytest.fixture(scope="module")
def golden_chain() -> Iterator[tuple[Anvil, dict[str, Any]]]:
    node = start_anvil()
    try:
        yield node, golden.build_chain(node.url)
    finally:
        node.stop()


def load(name: str) -> dict[str, Any]:
    return json.loads((golden.DATA / name).read_text(encoding="utf-8"))


def chain_for(url: str):  # type: ignore[no-untyped-def]
    """What `scb verify --proof FILE --rpc URL` opens on a machine with no configuration: the production wiring."""
    return chain_view_factory(Config(data={}), url)


GOLDEN_CASES = [
    ("valid.json", VALID, None, ""),
    ("valid-period2.json", VALID, None, ""),
    ("tampered-reading.json", INVALID, "reading", "the reading was altered"),
    ("wrong-root.json", INVALID, "root", "is not period 1's root on chain"),
    ("other-period.json", INVALID, "transaction", "settled period 1, not period 2"),
    ("other-chain.json", INVALID, "chain", "anchored on chain 1, but the RPC endpoint serves chain 31337"),
    ("tampered-leaf.json", INVALID, "MAM message", "the signed message does not contain this reading"),
    ("tampered-path.json", INVALID, "merkle proof", "but period 1's root on chain is"),
    ("tampered-payload.json", INVALID, "MAM message", "fails its check against the root"),
]


@pytest.mark.parametrize(("name", "verdict", "step", "message"), GOLDEN_CASES)
def test_golden_proof_files(golden_chain, name: str, verdict: int, step: str | None, message: str) -> None:
    node, _ = golden_chain
    report = verify_proof_file(load(name), chain_for(node.url), golden.SIDE_KEY)
    assert report.verdict == verdict, report.text()
    assert failed_step(report) == step, report.text()
    assert message in report.reason
    if verdict == VALID:
        names = [s.name for s in report.steps]
        assert names == ["proof file", "reading", "leaf", "MAM message", "chain", "period", "transaction", "root",
                         "merkle proof", "merkle verifyReading"]


def with_edited_leaf(data: dict[str, Any]) -> dict[str, Any]:
    """The file with the last hex digit of its merkle.leaf changed (digest, proof and root untouched)."""
    edited = json.loads(json.dumps(data))
    leaf = edited["merkle"]["leaf"]
    edited["merkle"]["leaf"] = leaf[:-1] + ("0" if leaf[-1] != "0" else "1")
    return edited


def test_the_leaf_field_must_be_the_digests_leaf(golden_chain) -> None:
    """merkle.leaf is redundant with the digest, and the JS references check the path with it
    (test_golden_js.py): a file whose leaf disagrees with its digest is INVALID here too, at its own step."""
    node, _ = golden_chain
    report = verify_proof_file(with_edited_leaf(load("valid.json")), chain_for(node.url), golden.SIDE_KEY)
    assert report.verdict == INVALID and failed_step(report) == "leaf", report.text()
    assert "is not the leaf of its digest" in report.reason
    other = load("valid.json")
    other["merkle"]["leaf_encoding"] = ["bytes32", "uint256"]
    report = verify_proof_file(other, chain_for(node.url), golden.SIDE_KEY)
    assert report.verdict == CANNOT_CHECK and failed_step(report) == "leaf", report.text()


def test_golden_files_are_what_the_replayed_chain_gives(golden_chain) -> None:
    """The committed files are the golden history's proofs (the replay is deterministic)."""
    _, chain = golden_chain
    for name, data in golden.golden_files(chain).items():
        assert load(name) == json.loads(json.dumps(data)), name


def test_golden_root_agrees_with_openzeppelin_merkle_tree() -> None:
    digests = [["0x" + r.digest().hex()] for r in golden.readings(0)]
    result = run_node("merkle_tree.js", {"trees": [{"values": digests, "encoding": ["bytes32"]}]})
    assert result["trees"][0]["root"] == load("valid.json")["merkle"]["root"]


def test_proof_file_checks_the_mam_message_when_given_the_side_key(golden_chain) -> None:
    node, _ = golden_chain
    data = load("valid.json")
    without = verify_proof_file(data, chain_for(node.url), None)
    assert without.verdict == VALID
    assert "signature not checked" in next(s.detail for s in without.steps if s.name == "MAM message")
    forged = json.loads(json.dumps(data))
    payload = forged["mam"]["payload"]
    forged["mam"]["payload"] = payload[:500] + ("A" if payload[500] != "A" else "B") + payload[501:]
    report = verify_proof_file(forged, chain_for(node.url), golden.SIDE_KEY)
    assert report.verdict == INVALID and failed_step(report) == "MAM message"


def test_proof_file_cannot_be_checked_without_the_chain() -> None:
    report = verify_proof_file(load("valid.json"), chain_for("http://127.0.0.1:9"), None)
    assert report.verdict == CANNOT_CHECK and "unreachable" in report.reason


def test_unknown_proof_format_version(golden_chain) -> None:
    node, _ = golden_chain
    data = load("valid.json")
    data["version"] = 99
    report = verify_proof_file(data, chain_for(node.url), None)
    assert report.verdict == CANNOT_CHECK and "version 99" in report.reason


#: what `scb verify` must not import (issue 16: each costs a large part of its one-second budget)
HEAVY = ("web3", "eth_account", "py_ecc", "eth_abi", "iota", "pkg_resources", "sqlalchemy", "requests")
#: `scb ...` as `python -m hub.cli` runs it, then the heavy packages that got imported, on stderr's last line
_DRIVER = ("import json, sys, hub.cli\n"
           "try:\n    code = hub.cli.main(sys.argv[1:])\n"
           "finally:\n    print('IMPORTED ' + json.dumps(sorted(m for m in %r if m in sys.modules)), file=sys.stderr)\n"
           "sys.exit(code)\n" % (HEAVY,))


def scb(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd or REPO, env={**os.environ, **(env or {})})


def scb_imports(*args: str, env: dict[str, str] | None = None,
                cwd: Path | None = None) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`scb` run as `scb` runs, and the heavy packages (HEAVY) it imported on the way."""
    proc = subprocess.run([sys.executable, "-c", _DRIVER, *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd or REPO, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    lines = [line for line in proc.stderr.splitlines() if line.startswith("IMPORTED ")]
    assert lines, proc.stderr
    return proc, json.loads(lines[-1].removeprefix("IMPORTED "))


def test_cli_verify_proof_exit_codes(golden_chain, tmp_path: Path) -> None:
    node, _ = golden_chain
    env = {"SCB_DATA_DIR": str(tmp_path)}  # no hub here: nothing but an RPC endpoint
    ok, imported = scb_imports("verify", "--proof", str(golden.DATA / "valid.json"), "--rpc", node.url, "--json",
                               env=env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["verdict"] == "VALID"
    assert imported == []  # the light read path: no web3, PyOTA or SQLAlchemy (issue 16)
    bad = scb("verify", "--proof", str(golden.DATA / "tampered-reading.json"), "--rpc", node.url, env=env,
              cwd=tmp_path)
    assert bad.returncode == 1 and "[FAIL] reading" in bad.stdout and "verdict: INVALID" in bad.stdout
    edited = tmp_path / "edited-leaf.json"
    edited.write_text(json.dumps(with_edited_leaf(load("valid.json"))), encoding="utf-8")
    leaf = scb("verify", "--proof", str(edited), "--rpc", node.url, env=env, cwd=tmp_path)
    assert leaf.returncode == 1 and "[FAIL] leaf" in leaf.stdout and "verdict: INVALID" in leaf.stdout
    down = scb("verify", "--proof", str(golden.DATA / "valid.json"), "--rpc", "http://127.0.0.1:9", env=env,
               cwd=tmp_path)
    assert down.returncode == 2 and "COULD NOT CHECK" in down.stdout
    missing = scb("verify", "--proof", str(tmp_path / "nope.json"), env=env, cwd=tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr


# ------------------------------------------------------------------------------------------------ by address


def verify(hub: Hub, address: str, *, on_hub: bool = True, root: str | None = None) -> Report:
    """`scb verify ADDRESS` as the CLI and the dashboard run it (hub.verification.verify_hub_address) over the test
    hub's in-memory tangle. `on_hub`: with the hub's database (its roots, proofs and archive); without it, as on an
    auditor's machine that knows the contract (`--contract`) and has the side key, and nothing else."""
    if on_hub:
        return verify_hub_address(hub.config, address, factory=hub.factory, transport=hub.tangle, root=root)
    return verify_hub_address(hub.config, address, factory=None, transport=hub.tangle, root=root,
                              contract=hub.system.contract)


def messages(hub: Hub) -> list[OutboxMessage]:
    with hub.factory() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


@pytest.fixture
def settled(hub: Hub) -> Hub:
    hub.run_until(START_MS + 3 * HOUR_MS + 20 * 60_000)
    assert hub.settle().settled == [1, 2, 3]
    return hub


def test_verify_random_addresses(settled: Hub) -> None:
    rng = random.Random(7)
    settled_messages = [m for m in messages(settled) if m.id <= 12]  # windows of periods 1-3
    for message in rng.sample(settled_messages, 4):
        report = verify(settled, message.address)
        assert report.verdict == VALID, report.text()
        steps = {s.name for s in report.steps}
        assert {"root", "fetch", "signature", "message", "chain", "channel"} <= steps
        assert "from the hub's database" in report.steps[0].detail
        with settled.factory() as session:
            carried = len(session.scalars(select(StoredReading.id).where(StoredReading.message_id == message.id))
                          .all())
        assert carried > 0
        assert sum(1 for s in report.steps if s.name.endswith("verifyReading") and s.ok) == carried
    # the batched verifyReading (one JSON-RPC batch for a message) answers as the single call, a bad proof too
    from energy_manager.reading import parse_digest
    from settlement.models import ReadingProof, SettlementPeriod

    with settled.factory() as session:
        rows = session.execute(select(StoredReading.digest, ReadingProof, SettlementPeriod.period_id)
                               .join(ReadingProof, ReadingProof.reading_id == StoredReading.id)
                               .join(SettlementPeriod, SettlementPeriod.id == ReadingProof.period_ref)
                               .where(SettlementPeriod.period_id == 2)).all()
    view = chain_view_factory(settled.config, None)(settled.system.contract, settled.system.system_id)
    view.check(Report("batch"))
    items = [(period_id, parse_digest(digest), proof.siblings()) for digest, proof, period_id in rows][:5]
    digest0, siblings0 = items[0][1], items[0][2]
    items.append((2, digest0, [bytes(32)] + siblings0[1:]))  # a sibling replaced: not a proof of the reading
    items.append((1, digest0, siblings0))  # the right proof for the wrong period
    singles = [view.chain.verify_reading(p, d, pr) for p, d, pr in items]
    assert singles == [True] * (len(items) - 2) + [False, False]
    assert view.chain.verify_readings(items) == singles


def test_verify_away_from_the_hub_walks_the_channel_and_rebuilds_the_period(settled: Hub) -> None:
    """Nothing from the hub's database: the root is found by walking the channel from the root registered on chain,
    and the proofs come from the period rebuilt off the tangle."""
    for message in messages(settled)[5:7]:
        report = verify(settled, message.address, on_hub=False)
        assert report.verdict == VALID, report.text()
        assert "walking the system's channel" in report.steps[0].detail
        assert any(s.name.endswith("tree") and "matches the on-chain root" in s.detail for s in report.steps)


def test_pruned_message_is_read_from_the_archive_and_said_so(settled: Hub) -> None:
    message = messages(settled)[2]
    settled.tangle.pruned.add(message.address)
    report = verify(settled, message.address)
    assert report.verdict == VALID, report.text()
    assert "archive" in [s for s in report.steps if s.name == "fetch"][0].detail
    no_archive = verify(settled, message.address, on_hub=False, root=message.root)
    assert no_archive.verdict == CANNOT_CHECK and failed_step(no_archive) == "fetch", no_archive.text()


def test_forged_bundle_fails_the_signature(settled: Hub) -> None:
    """A forged bundle at the address: away from the hub the message cannot be proven (INVALID at the signature);
    on the hub, the forgery is skipped and listed, and the message is read from the archive."""
    message = messages(settled)[1]
    real = settled.tangle.by_address[message.address][0]
    payload = real.fragments.rstrip("9")
    forged = payload[:300] + ("Z" if payload[300] != "Z" else "Y") + payload[301:]
    settled.tangle.by_address[message.address] = [FoundBundle("F" * 81, ("F" * 81,), ("9" * 2673,),
                                                              forged + "9" * (-len(forged) % 2187))]
    report = verify(settled, message.address, on_hub=False, root=message.root)
    assert report.verdict == INVALID and failed_step(report) == "signature", report.text()
    on_hub = verify(settled, message.address)
    assert on_hub.verdict == VALID, on_hub.text()
    assert any(s.name == "fetch" and "skipped bundle " + "F" * 81 in s.detail for s in on_hub.steps)


def test_wrong_root_for_the_address(settled: Hub) -> None:
    a, b = messages(settled)[0], messages(settled)[1]
    report = verify(settled, a.address, root=b.root)
    assert report.verdict == INVALID and failed_step(report) == "root"


def test_unknown_address_and_unsettled_reading_cannot_be_checked(settled: Hub) -> None:
    report = verify(settled, "A" * 81, on_hub=False)
    assert report.verdict == CANNOT_CHECK and "unknown address" in report.reason
    last = messages(settled)[-1]  # the window after period 3: published, not settled yet
    report = verify(settled, last.address)
    assert report.verdict == CANNOT_CHECK and "not settled yet" in report.reason
    settled.tangle.up = False
    down = verify(settled, messages(settled)[0].address, on_hub=False)
    assert down.verdict == CANNOT_CHECK


def test_cli_verify_address_on_the_hub(settled: Hub, tmp_path: Path) -> None:
    """`scb verify ADDRESS` as a user runs it on the hub: the configured database (roots, proofs, archive), the
    channel's side key file, the chain. The node is down here, so every message comes from the archive."""
    config = write_toml(settled.config, tmp_path / "scb.toml")
    message = messages(settled)[3]
    ok, imported = scb_imports("--config", str(config), "verify", message.address, "--node", "http://127.0.0.1:9",
                               "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert imported == []  # the hub's SQLite read with sqlite3, the chain without web3 (issue 16)
    result = json.loads(ok.stdout)
    assert result["verdict"] == "VALID"
    steps = {s["step"]: s["detail"] for s in result["steps"]}
    assert "from the hub's database" in steps["root"] and "archive" in steps["fetch"]
    unsettled = scb("--config", str(config), "verify", messages(settled)[-1].address, "--node",
                    "http://127.0.0.1:9")
    assert unsettled.returncode == 2 and "not settled yet" in unsettled.stdout, unsettled.stdout + unsettled.stderr
    assert "Traceback" not in ok.stderr + unsettled.stderr


def test_exported_proof_verifies_and_a_copy_with_another_reading_does_not(settled: Hub) -> None:
    with settled.factory() as session:
        ids = list(session.scalars(select(StoredReading.id).where(StoredReading.period == 2)))
    chain = chain_view_factory(settled.config, None)  # the configured chain, as on the hub
    data = export_proof(settled.factory, ids[0], "restricted")
    _seed, side_key = load_secrets(mam_settings(settled.config).channels["readings"])
    report = verify_proof_file(data, chain, side_key)
    assert report.verdict == VALID, report.text()
    other = export_proof(settled.factory, ids[1], "restricted")
    data["reading"] = other["reading"]  # a real, settled reading with someone else's proof
    report = verify_proof_file(data, chain, side_key)
    assert report.verdict == INVALID and failed_step(report) == "leaf", report.text()
    data["merkle"]["leaf"] = other["merkle"]["leaf"]  # the leaf made to agree: the path still leads elsewhere
    report = verify_proof_file(data, chain, side_key)
    assert report.verdict == INVALID and failed_step(report) == "merkle proof", report.text()
