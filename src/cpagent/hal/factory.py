"""Build the configured hardware backend; the station never knows which one it got."""

from __future__ import annotations

from cpagent.config import Config
from cpagent.exc import ConfigError
from cpagent.hal.base import Hardware
from cpagent.hal.sim import SimHardware

SIM_STATE_FILE = "sim-hardware.json"


def build_hardware(config: Config) -> Hardware:
    if config.hal.backend == "sim":
        sim = config.hal.sim
        return SimHardware(
            config.charge_point.connectors,
            voltage_v=sim.voltage_v,
            phases=sim.phases,
            ev_max_current_a=sim.ev_max_current_a,
            ev_battery_wh=sim.ev_battery_wh,
            ev_initial_soc=sim.ev_initial_soc,
            max_current_a=sim.max_current_a,
            state_file=config.storage.data_dir / SIM_STATE_FILE,
        )
    raise ConfigError([f"hal.backend: {config.hal.backend!r} is not available in this version"])


def meter_type(hardware: Hardware) -> str:
    return "cpagent simulated meter" if isinstance(hardware, SimHardware) else "Modbus meter"
