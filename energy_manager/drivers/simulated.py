"""The `simulated` driver: the whole demo community (PV, households, grid) as one device."""
from __future__ import annotations

from typing import Any

from energy_manager.drivers.base import Device, DeviceSample
from energy_manager.simulation import Community, CommunityParams


class SimulatedDevice(Device):
    """Reports `pv_wh`, `pv_w`, `<household>_wh`, `<household>_w`, `import_wh`, `import_w`, `export_wh`,
    `export_w` from `energy_manager.simulation`, at whatever community-clock time it is asked."""

    driver = "simulated"

    def __init__(self, name: str, params: CommunityParams, start_ms: int) -> None:
        super().__init__(name)
        self.params = params
        self.start_ms = start_ms
        self.community = Community.start(params, start_ms)

    def restore(self, state: dict[str, Any]) -> None:
        self.community = Community.restore(self.params, state, self.start_ms)

    def read(self, now_ms: int) -> DeviceSample | None:
        if now_ms // 60_000 < self.community.step:
            # asked for a time before the checkpoint (the clock was moved back): nothing to report
            return None
        return DeviceSample(ts_ms=now_ms, values=self.community.values_at(now_ms))

    def checkpoint(self) -> dict[str, Any] | None:
        return self.community.checkpoint()
