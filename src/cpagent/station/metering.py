"""Turn a meter reading into the sampled values a measurand list asks for."""

from __future__ import annotations

from collections.abc import Iterable

from cpagent.hal.base import MeterReading
from cpagent.station.model import SampledValue

PHASES = ("L1", "L2", "L3")


def sample_values(
    measurands: Iterable[str],
    reading: MeterReading,
    *,
    context: str,
    offered_a: float,
    phases: int,
    nominal_voltage_v: float = 230.0,
) -> tuple[SampledValue, ...]:
    """Values for every measurand the reading can supply, in the order asked.

    Per-phase quantities (current, voltage) are reported per phase, as OCPP
    wants them; active power as the total and, with more than one phase, per
    phase too. A measurand the hardware cannot supply right now (SoC with no EV)
    is left out rather than reported as zero.
    """
    out: list[SampledValue] = []
    for m in measurands:
        if m == "Energy.Active.Import.Register":
            out.append(SampledValue(m, round(reading.energy_wh), "Wh", context))
        elif m == "Power.Active.Import":
            out.append(SampledValue(m, round(reading.power_w, 1), "W", context))
            if len(reading.power_phase_w) > 1:
                for phase, watts in zip(PHASES, reading.power_phase_w, strict=False):
                    out.append(SampledValue(m, round(watts, 1), "W", context, phase))
        elif m == "Current.Import":
            for phase, amps in zip(PHASES, reading.current_a, strict=False):
                out.append(SampledValue(m, round(amps, 2), "A", context, phase))
        elif m == "Voltage":
            for phase, volts in zip(PHASES, reading.voltage_v, strict=False):
                out.append(SampledValue(m, round(volts, 1), "V", context, f"{phase}-N"))
        elif m == "Frequency" and reading.frequency_hz is not None:
            out.append(SampledValue(m, round(reading.frequency_hz, 2), None, context))
        elif m == "Current.Offered":
            out.append(SampledValue(m, round(offered_a, 1), "A", context))
        elif m == "Power.Offered":
            volts = reading.voltage_v[0] if reading.voltage_v else nominal_voltage_v
            out.append(SampledValue(m, round(offered_a * volts * phases, 1), "W", context))
        elif m == "SoC" and reading.soc_percent is not None:
            out.append(
                SampledValue(m, round(reading.soc_percent, 1), "Percent", context, None, "EV")
            )
    return tuple(out)
