"""Build the configured hardware backend; the station never knows which one it got."""

from __future__ import annotations

from cpagent.config import Config
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
            phase_switch=sim.phase_switch,
            state_file=config.storage.data_dir / SIM_STATE_FILE,
        )
    from cpagent.hal.hardware import RealHardware  # pulls in gpiozero and pyserial

    assert config.hal.hardware is not None  # always parsed for backend = "hardware"
    return RealHardware(config.hal.hardware)


def meter_type(config: Config) -> str:
    """BootNotification meterType: the meter model(s) the charger reads."""
    if config.hal.backend == "sim":
        return "cpagent simulated meter"
    assert config.hal.hardware is not None
    models = dict.fromkeys(c.meter.model for c in config.hal.hardware.connectors)
    return ", ".join(models)[:25]
