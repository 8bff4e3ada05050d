"""verifyReading agrees with @openzeppelin/merkle-tree (npm) on random trees, valid and tampered proofs alike."""
from __future__ import annotations

import random

from settlement import merkle
from tests.conftest import run_node
from tests.contracts.conftest import Accounts
from tests.contracts.solar import PeriodClock, Solar


def _tamper(rng: random.Random, proof: list[str]) -> list[str]:
    if not proof:
        return ["0x" + rng.randbytes(32).hex()]
    bad = list(proof)
    k = rng.randrange(len(bad))
    raw = bytearray(bytes.fromhex(bad[k][2:]))
    raw[rng.randrange(32)] ^= 1 << rng.randrange(8)
    bad[k] = "0x" + raw.hex()
    return bad


def test_verify_reading_agrees_with_openzeppelin_merkle_tree(solar: Solar, system: int, accts: Accounts) -> None:
    rng = random.Random(2024)
    sizes = [1, 2, 3, 5, 8, 33, 128, 257, 300] + [rng.randint(1, 300) for _ in range(3)]
    trees = [[rng.randbytes(32) for _ in range(n)] for n in sizes]
    js = run_node("merkle_tree.js", {"trees": [{"values": [["0x" + d.hex()] for d in t], "encoding": ["bytes32"]} for t in trees]})
    clock = PeriodClock(solar, system, accts.hub)
    checks = []  # (period, digest, proof, expected-by-JS-or-None)
    for period_id, (digests, ref) in enumerate(zip(trees, js["trees"]), start=1):
        clock.settle([0, 0, 0], root=bytes.fromhex(ref["root"][2:]), count=len(digests))
        assert merkle.to_hex(merkle.build_reading_tree(digests).root) == ref["root"]
        for i in rng.sample(range(len(digests)), min(len(digests), 12)):
            checks.append((period_id, ref["root"], digests[i], ref["proofs"][i]))
    # valid proofs: the contract accepts every proof the JS library made
    for period_id, _, digest, proof in checks:
        assert solar.call("verifyReading", system, period_id, digest, proof) is True
    # tampered proofs, wrong leaves and wrong periods: the contract says exactly what the JS library says
    cases = []
    for period_id, root, digest, proof in rng.sample(checks, 40):
        cases.append((period_id, root, digest, _tamper(rng, proof)))
        cases.append((period_id, root, rng.randbytes(32), proof))
        other = period_id % len(trees) + 1
        cases.append((other, js["trees"][other - 1]["root"], digest, proof))
    verdicts = run_node(
        "merkle_tree.js",
        {"verify": [{"root": root, "value": ["0x" + d.hex()], "proof": p, "encoding": ["bytes32"]} for _, root, d, p in cases]},
    )["verify"]
    on_chain = [solar.call("verifyReading", system, pid, d, p) for pid, _, d, p in cases]
    assert on_chain == verdicts
    assert not any(verdicts)  # every case is wrong in some way; both sides must say so
