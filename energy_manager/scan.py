"""`scb meters scan [DEVICE]`: read each configured device once and say what it found, for an installer with
the meter in front of them.

A Modbus device is read once on a fresh connection (the energy manager may be polling the same bus: one
extra request in between is harmless on TCP; on RS-485 stop the energy manager first, the docs say so). An MQTT
device subscribes as the energy manager would and waits up to `wait_s` for its first message; other drivers
are opened likewise and given `wait_s` to produce one sample.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from energy_manager.drivers.base import InputEvent
from energy_manager.drivers.mqtt import RETRYING, MqttDevice
from energy_manager.drivers.modbus import BusLost, PollError, SunSpecReader, link_of, read_once, read_profile
from energy_manager.modbus.profiles import UNITS
from energy_manager.settings import DeviceSettings, EnergySettings


@dataclass
class ScanResult:
    device: str
    driver: str
    where: str
    ok: bool
    reason: str = ""
    profile: str = ""
    model: str = ""
    #: value name -> (value, unit)
    values: dict[str, tuple[float, str]] = field(default_factory=dict)
    #: for SunSpec: the models found and the common model's manufacturer/model/serial
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"device": self.device, "driver": self.driver, "where": self.where, "ok": self.ok,
                "reason": self.reason or None, "profile": self.profile or None, "model": self.model or None,
                "values": {k: {"value": v, "unit": u} for k, (v, u) in self.values.items()},
                **({"details": self.details} if self.details else {})}


def _unit_of(name: str) -> str:
    return next((u for suffix, u in UNITS.items() if name.endswith(suffix)), "")


def scan_modbus(device: DeviceSettings) -> ScanResult:
    o = device.options
    link = link_of(o)
    profile = o["register_map"]
    result = ScanResult(device.name, "modbus", f"{link.describe()} unit {o['unit']}", False,
                        profile=o["profile"], model=profile.model if profile else "")
    units = {f.name: f.unit for f in profile.fields} if profile else {}
    reader = SunSpecReader() if profile is None else (lambda client, unit: read_profile(client, unit, profile))
    try:
        values, _raw = read_once(link, o["unit"], reader, o["timeout_s"])
    except PollError as exc:
        result.reason = f"{exc.kind}: {exc.detail}"
        return result
    except BusLost as exc:
        result.reason = f"unavailable: {exc}"
        return result
    result.ok = True
    result.values = {k: (v, units.get(k) or _unit_of(k)) for k, v in values.items()}
    if isinstance(reader, SunSpecReader):
        result.details = dict(reader.details)
        result.model = " ".join(x for x in (reader.details.get("manufacturer"), reader.details.get("model")) if x)
    return result


def scan_other(device: DeviceSettings, settings: EnergySettings, wait_s: float) -> ScanResult:
    from energy_manager.service import build_device

    d = build_device(device, settings, int(time.time() * 1000))
    result = ScanResult(device.name, device.driver, str(device.options.get("port") or device.options.get("url")
                                                        or device.driver), False)
    d.open()
    try:
        deadline = time.monotonic() + wait_s
        sample = None
        while sample is None and time.monotonic() < deadline:
            sample = d.read(int(time.time() * 1000))
            if sample is None:
                time.sleep(0.1)
        events = d.take_events()
    finally:
        d.close()
    if sample is None:
        last = f" (last: {events[-1].kind}: {events[-1].detail})" if events else ""
        result.reason = f"no data within {wait_s:g} s{last}"
        return result
    result.ok = True
    result.values = {k: (v, _unit_of(k)) for k, v in sample.values.items()}
    return result


def _refused(events: list[InputEvent]) -> InputEvent | None:
    """The first event saying the broker refused us (login, ACL, TLS): waiting longer cannot change it."""
    return next((e for e in events if "refused" in e.detail), None)


def scan_mqtt(device: DeviceSettings, settings: EnergySettings, wait_s: float) -> ScanResult:
    """Subscribe as the energy manager would and wait up to `wait_s` for the first message that decodes.

    Why stop early on a refused connection: a wrong password or an ACL that denies the topic does not fix itself
    while the installer waits, and paho would retry it for the whole of `wait_s`. An unreachable broker is waited
    for (it may be starting), and reported with the reason when the time is up."""
    from energy_manager.service import build_device

    o = device.options
    topics = [t.topic for t in o["topics"]]
    result = ScanResult(device.name, "mqtt", o["url"], False, profile=o["preset"],
                        details={"topics": topics})
    d = build_device(device, settings, int(time.time() * 1000))
    assert isinstance(d, MqttDevice)
    events: list[InputEvent] = []
    sample = None
    d.open()
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            sample = d.read(int(time.time() * 1000))
            events.extend(d.take_events())
            if sample is not None or _refused(events) is not None:
                break
            time.sleep(0.05)
        subscribed = d.connected.is_set()
    finally:
        d.close()
    if sample is not None:
        result.ok = True
        result.values = {k: (v, _unit_of(k)) for k, v in sample.values.items()}
        return result
    refused = _refused(events)
    if refused is not None:
        result.reason = f"{refused.kind}: {refused.detail.removesuffix(RETRYING)}"
    elif subscribed:
        bad = f" (last bad message: {events[-1].kind}: {events[-1].detail})" if events else ""
        result.reason = f"no message: subscribed to {', '.join(topics)} but nothing arrived within {wait_s:g} s{bad}"
    elif events:
        result.reason = f"{events[-1].kind}: {events[-1].detail.removesuffix(RETRYING)}"
    else:
        result.reason = f"unavailable: broker {o['host']}:{o['port']} did not answer within {wait_s:g} s"
    return result


def scan(settings: EnergySettings, names: list[str], wait_s: float) -> list[ScanResult]:
    results = []
    for name in names:
        device = settings.devices[name]
        if device.driver == "modbus":
            results.append(scan_modbus(device))
        elif device.driver == "mqtt":
            results.append(scan_mqtt(device, settings, wait_s))
        else:
            results.append(scan_other(device, settings, wait_s))
    return results


def show(result: ScanResult) -> str:
    head = f"{result.device} ({result.driver}, {result.where})"
    if result.profile:
        head += f": profile {result.profile}" + (f", {result.model}" if result.model else "")
    if not result.ok:
        return f"{head}\n  NO ANSWER: {result.reason}"
    lines = [head]
    for key, value in result.details.items():
        lines.append(f"  {key}: {', '.join(map(str, value)) if isinstance(value, list) else value}")
    for name, (value, unit) in result.values.items():
        lines.append(f"  {name:<14} {value:>16.3f} {unit}")
    return "\n".join(lines)
