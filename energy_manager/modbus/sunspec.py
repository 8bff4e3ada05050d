"""SunSpec discovery and decoding: the "SunS" marker, the model chain, scale factors.

A SunSpec device (Fronius, SMA, SolarEdge inverters and their meters) describes itself: the holding registers
at a base address (40000, 50000 or 0, tried in that order) start with the marker "SunS" (0x5375 0x6E53), followed
by a chain of models, each `id, length, <length registers>`, ended by id 0xFFFF. Values are integers with a
separate scale-factor register (value x 10^sf). Model 1 (common) names the manufacturer, model and serial;
models 101-103 are inverters (single, split, three phase), 201-204 meters. The offsets below are those of the
SunSpec Information Model Specification (models 1, 101-103, 201-204, integer + scale factor variants).

No I/O here: `discover` walks the chain through a reader the caller passes (the driver's pymodbus client), so
the walk is testable with a plain list of registers.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from energy_manager.modbus.decode import MAX_READ
from scb.errors import DataError

MARKER = (0x5375, 0x6E53)  # "SunS"
BASES = (40000, 50000, 0)
END = 0xFFFF
COMMON = 1
INVERTERS = (101, 102, 103)
METERS = (201, 202, 203, 204)
#: Longest model chain walked. Why: a device answering garbage would otherwise be walked for ever.
MAX_MODELS = 64
#: "not implemented" markers of the specification: int16, uint16/sunssf, acc32
NOT_INT16 = 0x8000
NOT_UINT16 = 0xFFFF

# offsets inside a model's data (after its id and length)
INVERTER_OFFSETS = {"A": 0, "A_SF": 4, "PhVphA": 8, "V_SF": 11, "W": 12, "W_SF": 13, "Hz": 14, "Hz_SF": 15,
                    "WH": 22, "WH_SF": 24}
METER_OFFSETS = {"A": 0, "A_SF": 4, "PhVphA": 6, "V_SF": 13, "Hz": 14, "Hz_SF": 15, "W": 16, "W_SF": 20,
                 "TotWhExp": 36, "TotWhImp": 44, "TotWh_SF": 52}
COMMON_STRINGS = {"manufacturer": (0, 16), "model": (16, 16), "version": (40, 8), "serial": (48, 16)}

Reader = Callable[[int, int], Awaitable[list[int]]]


class AddressRefused(DataError):
    """The device answered an exception for an address (a base that is not there)."""


class NotSunSpec(DataError):
    """No SunSpec marker at any base address, or a model chain that does not hold together."""


@dataclass(frozen=True)
class Model:
    id: int
    address: int  # of the model's first data register (after id and length)
    length: int


def _int16(word: int) -> int | None:
    return None if word == NOT_INT16 else (word - 0x10000 if word & 0x8000 else word)


def _uint16(word: int) -> int | None:
    return None if word == NOT_UINT16 else word


def _acc32(words: Sequence[int]) -> int | None:
    value = (words[0] << 16) | words[1]
    return None if value == 0 else value  # 0 means "not accumulated" in the specification


def _sf(word: int) -> int | None:
    sf = _int16(word)
    return sf if sf is not None and -10 <= sf <= 10 else None


def _scaled(value: int | None, sf: int | None) -> float | None:
    return None if value is None or sf is None else value * 10.0 ** sf


def text(words: Sequence[int]) -> str:
    """A SunSpec string: two ASCII characters per register, NUL padded."""
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    return raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()


def decode_common(data: Sequence[int]) -> dict[str, str]:
    return {name: text(data[o: o + n]) for name, (o, n) in COMMON_STRINGS.items() if len(data) >= o + n}


def decode_inverter(data: Sequence[int]) -> dict[str, float]:
    """Models 101-103: energy_wh (lifetime), power_w (AC, positive producing), voltage_v, current_a,
    frequency_hz; a value the inverter does not implement is left out."""
    o = INVERTER_OFFSETS
    values = {
        "current_a": _scaled(_uint16(data[o["A"]]), _sf(data[o["A_SF"]])),
        "voltage_v": _scaled(_uint16(data[o["PhVphA"]]), _sf(data[o["V_SF"]])),
        "power_w": _scaled(_int16(data[o["W"]]), _sf(data[o["W_SF"]])),
        "frequency_hz": _scaled(_uint16(data[o["Hz"]]), _sf(data[o["Hz_SF"]])),
        "energy_wh": _scaled(_acc32(data[o["WH"]: o["WH"] + 2]), _sf(data[o["WH_SF"]])),
    }
    return {k: v for k, v in values.items() if v is not None}


def decode_meter(data: Sequence[int]) -> dict[str, float]:
    """Models 201-204: import_wh, export_wh, power_w (positive importing), voltage_v, current_a, frequency_hz."""
    o = METER_OFFSETS
    wh_sf = _sf(data[o["TotWh_SF"]])
    values = {
        "current_a": _scaled(_int16(data[o["A"]]), _sf(data[o["A_SF"]])),
        "voltage_v": _scaled(_int16(data[o["PhVphA"]]), _sf(data[o["V_SF"]])),
        "frequency_hz": _scaled(_int16(data[o["Hz"]]), _sf(data[o["Hz_SF"]])),
        "power_w": _scaled(_int16(data[o["W"]]), _sf(data[o["W_SF"]])),
        "import_wh": _scaled(_acc32(data[o["TotWhImp"]: o["TotWhImp"] + 2]), wh_sf),
        "export_wh": _scaled(_acc32(data[o["TotWhExp"]: o["TotWhExp"] + 2]), wh_sf),
    }
    return {k: v for k, v in values.items() if v is not None}


def decoder(model_id: int) -> Callable[[Sequence[int]], dict[str, float]] | None:
    if model_id in INVERTERS:
        return decode_inverter
    if model_id in METERS:
        return decode_meter
    return None


async def read_span(read: Reader, address: int, count: int) -> list[int]:
    """`count` registers from `address`, in requests of at most MAX_READ."""
    out: list[int] = []
    while count > 0:
        n = min(count, MAX_READ)
        out += await read(address, n)
        address, count = address + n, count - n
    return out


async def find_base(read: Reader, bases: Sequence[int] = BASES) -> int:
    """The first base address holding the "SunS" marker. `read` raises for an address the device refuses
    (an exception response); that base is skipped."""
    for base in bases:
        try:
            words = await read(base, 2)
        except AddressRefused:
            continue
        if tuple(words[:2]) == MARKER:
            return base
    raise NotSunSpec(f"no SunSpec marker (\"SunS\") at {', '.join(str(b) for b in bases)}")


async def discover(read: Reader, bases: Sequence[int] = BASES) -> tuple[int, list[Model]]:
    """The base address and the model chain (without the end marker)."""
    base = await find_base(read, bases)
    models: list[Model] = []
    address = base + 2
    for _ in range(MAX_MODELS):
        head = await read(address, 2)
        model_id, length = head[0], head[1]
        if model_id == END:
            return base, models
        if length == 0 or address + 2 + length > 0x10000:
            raise NotSunSpec(f"model {model_id} at {address} has length {length}: the chain is broken")
        models.append(Model(model_id, address + 2, length))
        address += 2 + length
    raise NotSunSpec(f"more than {MAX_MODELS} models from {base}: not a SunSpec chain")


#: The lengths of the models in the specification: a shorter one cannot hold the registers decoded above.
MODEL_LENGTH = {**{m: 50 for m in INVERTERS}, **{m: 105 for m in METERS}}


def energy_model(models: Sequence[Model]) -> Model:
    """The model the values come from: the first inverter or meter in the chain."""
    for model in models:
        if decoder(model.id) is not None:
            if model.length < MODEL_LENGTH[model.id]:
                raise NotSunSpec(f"model {model.id} at {model.address} has {model.length} registers, "
                                 f"not {MODEL_LENGTH[model.id]}")
            return model
    ids = ", ".join(str(m.id) for m in models) or "none"
    raise NotSunSpec(f"no inverter (101-103) or meter (201-204) model in the chain (models: {ids})")
