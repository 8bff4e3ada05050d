"""What the bytes that came back for an unanswered request were (pure): another unit's answer, a damaged frame,
or nothing at all.

Why this exists: pymodbus 3.x drops both failures silently and the request then simply times out. Its RTU framer
(`pymodbus.framer.rtu.FramerRTU.decode`) discards a frame whose CRC does not match ("Frame CRC check failed,
possible garbage", a DEBUG log line), and `FramerBase.handleFrame` skips a sound frame from a device id other
than the one asked ("request ask for id=... but got id=..., Skipping", an ERROR log line); the transaction
manager only ever sees no response and raises `ModbusIOException` after `timeout`. The driver records the bytes
pymodbus received (its public `trace_packet` hook, see `energy_manager.drivers.modbus.Wire`) and, when a request
times out, asks `diagnose` what they were, so an installer sees "crc" (noise, a bad termination, a wrong baud
rate) or "wrong_unit" (two meters with the same id, or a wrong `unit`) rather than a bare timeout. Parsing the
log lines instead would tie the driver to pymodbus's wording, and a framer subclass to its private wiring.

The CRC is pymodbus's own (`FramerRTU.compute_CRC`): the driver must agree with the framer that dropped the frame.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pymodbus.framer.rtu import FramerRTU

#: the three verdicts (the driver's event kinds)
TIMEOUT = "timeout"
CRC = "crc"
WRONG_UNIT = "wrong_unit"
#: RTU: unit, function, CRC (2); an exception answer adds its code, a register answer a byte count and the data.
EXCEPTION_SIZE = 5
#: Modbus TCP's MBAP header: transaction (2), protocol (2), length (2), unit (1).
MBAP_SIZE = 7


@dataclass(frozen=True)
class Verdict:
    kind: str
    detail: str
    raw: bytes  # the bytes the verdict is about, as hex (for the event and the log)


def show_bytes(data: bytes) -> bytes:
    """Bytes as they crossed the wire, in hex (`07 04 1c ...`), for an input event."""
    return data.hex(" ").encode("ascii")


def _rtu_size(data: bytes) -> int | None:
    """The length of the RTU answer that starts `data` (a read-registers or exception answer), None if `data`
    does not start like one or is too short to tell."""
    if len(data) < 3:
        return None
    function = data[1]
    if function & 0x80:
        return EXCEPTION_SIZE
    if function in (3, 4):
        return 5 + data[2]
    return None


def crc_ok(frame: bytes) -> bool:
    """Whether an RTU frame's last two bytes are the CRC-16/MODBUS of the rest (pymodbus's byte order)."""
    return len(frame) >= 4 and FramerRTU.check_CRC(frame[:-2], int.from_bytes(frame[-2:], "big"))


def diagnose_rtu(received: Sequence[bytes], unit: int) -> Verdict:
    """Why an RTU request to `unit` got no answer, from the buffers pymodbus looked at (each one whole, as it
    was handed to the framer)."""
    damaged: bytes | None = None
    for data in received:
        for start in range(len(data)):
            size = _rtu_size(data[start:])
            if size is None or start + size > len(data):
                continue
            frame = data[start:start + size]
            if crc_ok(frame):
                if frame[0] != unit:
                    return Verdict(WRONG_UNIT, f"unit {frame[0]} answered a request to unit {unit}",
                                   show_bytes(frame))
                # a sound answer from the unit asked that pymodbus did not take: it came too late (after the
                # timeout, or for the request before), which is what a timeout is
                return Verdict(TIMEOUT, f"unit {unit} answered too late", show_bytes(frame))
            if damaged is None and start == 0:
                damaged = data
    if damaged is not None:
        return Verdict(CRC, f"answer for unit {unit} with a bad CRC ({len(damaged)} bytes)", show_bytes(damaged))
    junk = max(received, key=len, default=b"")
    if junk:
        # bytes, but no frame in them: noise on the line, or a frame cut short; neither passed a CRC check
        return Verdict(CRC, f"{len(junk)} bytes that are no complete frame for unit {unit}", show_bytes(junk))
    return Verdict(TIMEOUT, f"no answer from unit {unit}", b"")


def diagnose_tcp(received: Sequence[bytes], unit: int) -> Verdict:
    """Why a Modbus TCP request to `unit` got no answer (TCP has no CRC: a whole frame for another unit is the
    one thing to tell apart from silence)."""
    for data in received:
        if len(data) >= MBAP_SIZE + 1:
            length = int.from_bytes(data[4:6], "big")
            if len(data) >= 6 + length and data[6] != unit:
                return Verdict(WRONG_UNIT, f"unit {data[6]} answered a request to unit {unit}",
                               show_bytes(data[:6 + length]))
    junk = max(received, key=len, default=b"")
    if junk:
        return Verdict(TIMEOUT, f"unit {unit} sent {len(junk)} bytes that pymodbus did not accept",
                       show_bytes(junk))
    return Verdict(TIMEOUT, f"no answer from unit {unit}", b"")
