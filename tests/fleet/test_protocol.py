"""The wire format: a signed batch opens to its signer; any change to the batch, a missing or foreign signature,
or a malformed batch is refused with the error the server answers 401 or 400 for."""
from __future__ import annotations

import copy
import json

import pytest

from hub.fleet.protocol import BatchError, SignatureError, batch_digest, make_batch, open_envelope, sign
from settlement.signing import Signer

HUB = Signer(bytes([0x11]) * 32)
OTHER = Signer(bytes([0x22]) * 32)


def batch() -> dict:
    return make_batch("hub-a", HUB.address, 3, 1_893_456_000_000, [{"kind": "reading", "id": 1}],
                      {"sent_at_ms": 5, "alerts": [], "load": 0.25})


def test_a_signed_batch_opens_to_its_signer_even_re_serialised() -> None:
    envelope = sign(batch(), HUB)
    again = json.loads(json.dumps(envelope, indent=4))  # a proxy that re-indents the body
    opened = open_envelope(again)
    assert opened.signer == HUB.address and opened.digest == batch_digest(envelope["batch"])
    assert len(opened.digest) == 32


@pytest.mark.parametrize("change", [
    lambda b: b["items"].append({"kind": "reading", "id": 2}),
    lambda b: b.update(seq=4),
    lambda b: b["heartbeat"].update(alerts=[{"code": "x"}]),
])
def test_any_change_to_the_batch_breaks_the_signature(change) -> None:  # type: ignore[no-untyped-def]
    envelope = sign(batch(), HUB)
    tampered = copy.deepcopy(envelope)
    change(tampered["batch"])
    with pytest.raises(SignatureError, match="not signed by its account"):
        open_envelope(tampered)


def test_a_signature_by_another_account_or_none_is_refused() -> None:
    with pytest.raises(SignatureError, match="not signed by its account"):
        open_envelope(sign(batch(), OTHER))
    with pytest.raises(SignatureError, match="no signature"):
        open_envelope({"batch": batch()})
    with pytest.raises(SignatureError):
        open_envelope({"batch": batch(), "signature": "0x" + "00" * 65})


@pytest.mark.parametrize("field,value,message", [
    ("format", "other", "not an scb-fleet-batch"),
    ("hub", "", "batch.hub"),
    ("account", "0x12", "batch.account"),
    ("seq", -1, "batch.seq"),
    ("seq", True, "batch.seq"),
    ("items", [{"kind": "nonsense"}], "kind is one of"),
    ("heartbeat", [1], "batch.heartbeat"),
])
def test_malformed_batches(field: str, value: object, message: str) -> None:
    bad = batch()
    bad[field] = value
    with pytest.raises(BatchError, match=message):
        open_envelope(sign(bad, HUB))
    with pytest.raises(BatchError):
        open_envelope([1, 2])
