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
from mam_client.channels import load_secrets
from mam_client.models import OutboxMessage
from mam_client.settings import mam_settings
from mam_client.transport import FoundBundle
from settlement.chain import ChainClient
from hub.verification import export_proof
from settlement.models import ReadingProof, SettlementPeriod
from settlement.settings import ethereum_settings
from settlement.verify import (
    CANNOT_CHECK,
    INVALID,
    VALID,
    AddressContext,
    ChainView,
    HubRecord,
    Report,
    verify_address,
    verify_proof_file,
)
from scb.config import Config
from tests.conftest import REPO, run_node
from tests.settlement import golden
from tests.settlement.conftest import START_MS, Anvil, Hub, start_anvil

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
    eth = ethereum_settings(Config(data={"ethereum": {"rpc_url": url}}))
    return lambda contract, system_id: ChainView(ChainClient(eth), contract, system_id)


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
        assert names == ["proof file", "reading", "MAM message", "chain", "period", "transaction", "root",
                         "merkle proof", "merkle verifyReading"]


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
    assert without.verdict == VALID and "signature not checked" in without.steps[2].detail
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


def scb(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd or REPO, env={**os.environ, **(env or {})})


def test_cli_verify_proof_exit_codes(golden_chain, tmp_path: Path) -> None:
    node, _ = golden_chain
    env = {"SCB_DATA_DIR": str(tmp_path)}  # no hub here: nothing but an RPC endpoint
    ok = scb("verify", "--proof", str(golden.DATA / "valid.json"), "--rpc", node.url, "--json", env=env,
             cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["verdict"] == "VALID"
    bad = scb("verify", "--proof", str(golden.DATA / "tampered-reading.json"), "--rpc", node.url, env=env,
              cwd=tmp_path)
    assert bad.returncode == 1 and "[FAIL] reading" in bad.stdout and "verdict: INVALID" in bad.stdout
    down = scb("verify", "--proof", str(golden.DATA / "valid.json"), "--rpc", "http://127.0.0.1:9", env=env,
               cwd=tmp_path)
    assert down.returncode == 2 and "COULD NOT CHECK" in down.stdout
    missing = scb("verify", "--proof", str(tmp_path / "nope.json"), env=env, cwd=tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr


# ------------------------------------------------------------------------------------------------ by address


def context(hub: Hub, *, db: bool = True, root: str | None = None, archive: bool = True,
            proofs: bool = True) -> AddressContext:
    _seed, side_key = load_secrets(mam_settings(hub.config).channels["readings"])
    eth = ethereum_settings(hub.config)

    def root_lookup(address: str) -> str | None:
        with hub.factory() as session:
            return session.scalars(select(OutboxMessage.root).where(OutboxMessage.address == address)).first()

    def reading_lookup(digest: str) -> HubRecord | None:
        with hub.factory() as session:
            reading = session.scalars(select(StoredReading).where(StoredReading.digest == digest)).first()
            proof = session.get(ReadingProof, reading.id) if reading else None
            if reading is None or proof is None:
                return None if reading is None else HubRecord(reading.id, None, None, False)
            period = session.get(SettlementPeriod, proof.period_ref)
            return HubRecord(reading.id, period.period_id, proof.siblings(), proof.late)

    def archive_reader(address: str) -> list[str]:
        with hub.factory() as session:
            return [p for p in session.scalars(select(OutboxMessage.payload).where(OutboxMessage.address == address))]

    return AddressContext(transport=hub.tangle, archive=archive_reader if archive else None, mode="restricted",
                          side_key=side_key, chain=ChainView(ChainClient(eth), hub.system.contract, 1), root=root,
                          root_lookup=root_lookup if db else None,
                          reading_lookup=reading_lookup if proofs else None)


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
        report = verify_address(message.address, context(settled))
        assert report.verdict == VALID, report.text()
        steps = {s.name for s in report.steps}
        assert {"root", "fetch", "signature", "message", "chain", "channel"} <= steps
        with settled.factory() as session:
            carried = len(session.scalars(select(StoredReading.id).where(StoredReading.message_id == message.id))
                          .all())
        assert carried > 0
        assert sum(1 for s in report.steps if s.name.endswith("verifyReading") and s.ok) == carried


def test_verify_without_the_database_walks_the_channel(settled: Hub) -> None:
    message = messages(settled)[5]
    report = verify_address(message.address, context(settled, db=False))
    assert report.verdict == VALID
    assert "walking the system's channel" in report.steps[0].detail


def test_verify_away_from_the_hub_rebuilds_the_period_from_the_tangle(settled: Hub) -> None:
    """Nothing from the hub's database: root found by walking, proofs from the period rebuilt off the tangle."""
    message = messages(settled)[6]
    report = verify_address(message.address, context(settled, db=False, archive=False, proofs=False))
    assert report.verdict == VALID, report.text()
    assert any(s.name.endswith("tree") and "matches the on-chain root" in s.detail for s in report.steps)


def test_pruned_message_is_read_from_the_archive_and_said_so(settled: Hub) -> None:
    message = messages(settled)[2]
    settled.tangle.pruned.add(message.address)
    report = verify_address(message.address, context(settled))
    assert report.verdict == VALID
    assert "archive" in [s for s in report.steps if s.name == "fetch"][0].detail
    no_archive = verify_address(message.address, context(settled, archive=False))
    assert no_archive.verdict == CANNOT_CHECK and failed_step(no_archive) == "fetch"


def test_forged_bundle_fails_the_signature(settled: Hub) -> None:
    message = messages(settled)[1]
    real = settled.tangle.by_address[message.address][0]
    payload = real.fragments.rstrip("9")
    forged = payload[:300] + ("Z" if payload[300] != "Z" else "Y") + payload[301:]
    settled.tangle.by_address[message.address] = [FoundBundle("F" * 81, ("F" * 81,), ("9" * 2673,),
                                                              forged + "9" * (-len(forged) % 2187))]
    report = verify_address(message.address, context(settled, archive=False))
    assert report.verdict == INVALID and failed_step(report) == "signature", report.text()


def test_wrong_root_for_the_address(settled: Hub) -> None:
    a, b = messages(settled)[0], messages(settled)[1]
    report = verify_address(a.address, context(settled, root=b.root))
    assert report.verdict == INVALID and failed_step(report) == "root"


def test_unknown_address_and_unsettled_reading_cannot_be_checked(settled: Hub) -> None:
    report = verify_address("A" * 81, context(settled, db=False))
    assert report.verdict == CANNOT_CHECK and "unknown address" in report.reason
    last = messages(settled)[-1]  # the window after period 3: published, not settled yet
    report = verify_address(last.address, context(settled))
    assert report.verdict == CANNOT_CHECK and "not settled yet" in report.reason
    settled.tangle.up = False
    down = verify_address(messages(settled)[0].address, context(settled, archive=False))
    assert down.verdict == CANNOT_CHECK


def test_exported_proof_verifies_and_a_copy_with_another_reading_does_not(settled: Hub) -> None:
    with settled.factory() as session:
        ids = list(session.scalars(select(StoredReading.id).where(StoredReading.period == 2)))
    data = export_proof(settled.factory, ids[0], "restricted")
    _seed, side_key = load_secrets(mam_settings(settled.config).channels["readings"])
    report = verify_proof_file(data, chain_for(ethereum_settings(settled.config).rpc_url), side_key)
    assert report.verdict == VALID, report.text()
    other = export_proof(settled.factory, ids[1], "restricted")
    data["reading"] = other["reading"]  # a real, settled reading with someone else's proof
    report = verify_proof_file(data, chain_for(ethereum_settings(settled.config).rpc_url), side_key)
    assert report.verdict == INVALID and failed_step(report) == "merkle proof"
