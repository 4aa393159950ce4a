"""Parameters, open-circuit voltage and presets of the simulated cells.

Units: current A, voltage V, charge Ah, time s. Positive current charges the
cell; ``soc`` rises on charge. See :mod:`sim.cell` for the model that uses these
parameters and for the meaning of each term.

Presets
-------
``"si-li-half"``
    Si vs Li half cell of seed 000 (lab micro-CT). Capacity from 0.9 mg of
    composite, 75 % Si, 3579 mAh/g: 2.42 mAh. Pristine, it rests at 2.8 V.
    Lithiation plateaus 0.25-0.1 V, delithiation 0.3-0.5 V with a steep rise
    to 2-3 V once delithiated. First-cycle coulombic efficiency 80-85 % (003).
``"si-li-half-deactivating"``
    The same cell as seed 000 found it: most lithiated particles lose contact
    and keep their lithium. Only 20 % of the lithiated Si delithiates
    (``reversible_fraction``): 000 got 500 of 3000 mAh/g back on charge (0.17)
    and saw 24 % of particles delithiate (0.28). Resistances are those of a lab cell (hundreds
    of ohm); at 0.04 mA the terminal voltage passes 0.03, 0.02, 0.01 and 0 V
    about an hour apart before the Si is fully lithiated.
``"si-nmc811-full"``
    Si | NMC811 full cell of seed 002 (nano-CT): 3.5 mAh/cm2 on a 1.1 mm disc,
    0.0333 mAh. OCV 3.0 V (pristine, soc 0) to 4.2 V (soc 1). The tiny cell's
    polarisation (12 kohm, ~115 ohm cm2, and slow diffusion) makes C/3 charge
    reach 4.3 V near 65 % SoC (002 Fig. 2d: CV onset near 50 %) and a CV hold's
    current fall from C/3 to C/10 in about 75 min.
"""

from __future__ import annotations

import functools
import math
from bisect import bisect_right
from dataclasses import dataclass, replace

__all__ = ["CELL_PRESETS", "CellParameters", "OcvTable", "get_preset", "open_circuit_voltage",
           "scaled_to_capacity"]


@dataclass(frozen=True)
class CellParameters:
    """Named, documented parameters of one cell.

    Attributes
    ----------
    name, description : str
        Preset key and a sentence on where the numbers come from.
    capacity_Ah : float
        Nominal (reversible) capacity, Ah; 1C is ``capacity_Ah`` A.
    v_min, v_max : float
        Normal operating window of the protocols, V.
    v_floor, v_ceiling : float
        Physical bounds the terminal voltage never leaves, V.
    r_series_ohm : float
        Ohmic series resistance, ohm.
    r1_ohm, tau1_s : float
        RC pair (charge transfer): resistance, ohm; time constant, s.
    diffusion_tau_s : float
        Bulk diffusion time constant, s: the decay time of a CV-hold current.
    surface_fraction : float
        Fraction of the capacity in the surface tank, in (0, 1).
    hysteresis_rate : float
        ``gamma``: ``h`` relaxes by a factor e per ``1/gamma`` of the capacity passed.
    sei_capacity_fraction : float
        Saturated SEI charge as a fraction of ``capacity_Ah``.
    sei_initial_fraction : float
        Fraction of the Si-lithiating current taken by SEI on a pristine cell.
    si_lithiation_sign : int
        Sign of the current that lithiates Si: -1 (Si vs Li) or +1 (Si | NMC).
    initial_soc, initial_hysteresis : float
        Pristine state: SoC in [0, 1] and ``h`` in [-1, 1].
    ocv_soc : tuple of float
        Increasing SoC knots; they start at or below 0 and end at or above 1,
        the margin beyond being the saturated (side-reaction) region.
    ocv_charge_V, ocv_discharge_V : tuple of float
        Non-decreasing OCV at the knots, V, on the charge (``h = 1``) and
        discharge (``h = -1``) branches.
    reversible_fraction : float
        Share of the lithiated Si that delithiates again, in (0, 1]; the rest is
        trapped in particles that lose contact (deactivated, seed 000).
    """

    name: str
    description: str
    capacity_Ah: float
    v_min: float
    v_max: float
    v_floor: float
    v_ceiling: float
    r_series_ohm: float
    r1_ohm: float
    tau1_s: float
    diffusion_tau_s: float
    surface_fraction: float
    hysteresis_rate: float
    sei_capacity_fraction: float
    sei_initial_fraction: float
    si_lithiation_sign: int
    initial_soc: float
    initial_hysteresis: float
    ocv_soc: tuple[float, ...]
    ocv_charge_V: tuple[float, ...]
    ocv_discharge_V: tuple[float, ...]
    reversible_fraction: float = 1.0

    def __post_init__(self) -> None:
        problems = _parameter_problems(self)
        if problems:
            raise ValueError(f"invalid CellParameters {self.name!r}: " + "; ".join(problems))

    def current_at_c_rate(self, c_rate: float) -> float:
        """Return the current (A) for a C-rate (1/h), e.g. ``1/3`` for C/3."""
        return c_rate * self.capacity_Ah


def _parameter_problems(p: CellParameters) -> list[str]:
    knots, up, down = p.ocv_soc, p.ocv_charge_V, p.ocv_discharge_V
    checks = {
        "capacity_Ah, r_series_ohm, r1_ohm, tau1_s, diffusion_tau_s must be > 0": min(
            p.capacity_Ah, p.r_series_ohm, p.r1_ohm, p.tau1_s, p.diffusion_tau_s) > 0,
        "need v_floor <= v_min < v_max <= v_ceiling":
            p.v_floor <= p.v_min < p.v_max <= p.v_ceiling,
        "surface_fraction must be in (0, 1)": 0 < p.surface_fraction < 1,
        "hysteresis_rate must be >= 0": p.hysteresis_rate >= 0,
        "sei fractions must be in [0, 1)":
            0 <= p.sei_capacity_fraction < 1 and 0 <= p.sei_initial_fraction < 1,
        "si_lithiation_sign must be +1 or -1": p.si_lithiation_sign in (1, -1),
        "initial_soc in [0, 1], initial_hysteresis in [-1, 1]":
            0 <= p.initial_soc <= 1 and -1 <= p.initial_hysteresis <= 1,
        "OCV tables need equal lengths >= 2": len(knots) == len(up) == len(down) >= 2,
        "reversible_fraction must be in (0, 1]": 0 < p.reversible_fraction <= 1,
    }
    problems = [msg for msg, ok in checks.items() if not ok]
    if not problems:
        pairs = list(zip(knots, knots[1:])) + list(zip(up, up[1:])) + list(zip(down, down[1:]))
        if any(b < a for a, b in pairs) or any(b == a for a, b in zip(knots, knots[1:])):
            problems.append("ocv_soc must increase, OCV branches must not decrease")
        if knots[0] > 0 or knots[-1] < 1:
            problems.append("ocv_soc must cover [0, 1]")
    return problems


def _pchip_slopes(x: tuple[float, ...], y: tuple[float, ...]) -> list[float]:
    """Knot derivatives of the monotone (Fritsch-Butland) cubic Hermite interpolant."""
    h = [b - a for a, b in zip(x, x[1:])]
    delta = [(y[i + 1] - y[i]) / h[i] for i in range(len(h))]
    d = [delta[0]] + [0.0] * (len(h) - 1) + [delta[-1]]
    for k in range(1, len(h)):
        if delta[k - 1] * delta[k] > 0.0:  # flat or turning: zero slope keeps monotone
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])
    return d


def _hermite_coefficients(x: tuple[float, ...], y: tuple[float, ...]) -> list[tuple[float, ...]]:
    """Per-segment cubic coefficients (c0, c1, c2, c3) in the local offset from the knot."""
    d = _pchip_slopes(x, y)
    coeffs = []
    for i in range(len(x) - 1):
        h = x[i + 1] - x[i]
        delta = (y[i + 1] - y[i]) / h
        c2 = (3 * delta - 2 * d[i] - d[i + 1]) / h
        c3 = (d[i] + d[i + 1] - 2 * delta) / (h * h)
        coeffs.append((y[i], d[i], c2, c3))
    return coeffs


class OcvTable:
    """Fast OCV lookup: monotone cubic interpolation of both branches.

    Smooth (C1) curves keep dV/dt continuous, so relaxation and "voltage has
    stabilised" criteria do not see kinks at the knots.

    Parameters
    ----------
    p : CellParameters
        The cell whose ``ocv_*`` tables to interpolate.
    """

    __slots__ = ("knots", "up", "down", "v_lo", "v_hi")

    def __init__(self, p: CellParameters) -> None:
        self.knots = p.ocv_soc
        self.up = _hermite_coefficients(p.ocv_soc, p.ocv_charge_V)
        self.down = _hermite_coefficients(p.ocv_soc, p.ocv_discharge_V)
        self.v_lo, self.v_hi = p.v_floor, p.v_ceiling

    def evaluate(self, soc: float, h: float) -> tuple[float, float]:
        """Return (OCV in V, dOCV/dsoc in V) at surface SoC ``soc`` and hysteresis ``h``.

        SoC past the table's ends is clamped to them; ``h`` is not checked.
        """
        knots = self.knots
        if soc <= knots[0]:
            i, soc = 0, knots[0]
        elif soc >= knots[-1]:
            i, soc = len(knots) - 2, knots[-1]
        else:
            i = bisect_right(knots, soc) - 1
        x = soc - knots[i]
        a0, a1, a2, a3 = self.up[i]
        b0, b1, b2, b3 = self.down[i]
        v_up = a0 + x * (a1 + x * (a2 + x * a3))
        v_dn = b0 + x * (b1 + x * (b2 + x * b3))
        s_up = a1 + x * (2.0 * a2 + 3.0 * x * a3)
        s_dn = b1 + x * (2.0 * b2 + 3.0 * x * b3)
        w = 0.5 * (1.0 + h)  # weight of the charge branch
        v = v_dn + w * (v_up - v_dn)
        return min(max(v, self.v_lo), self.v_hi), s_dn + w * (s_up - s_dn)


@functools.lru_cache(maxsize=32)
def _table(params: CellParameters) -> OcvTable:
    return OcvTable(params)


def open_circuit_voltage(params: CellParameters, soc: float, hysteresis: float) -> float:
    """Open-circuit voltage of a cell.

    Parameters
    ----------
    params : CellParameters
        The cell.
    soc : float
        State of charge (dimensionless); values past the table's ends saturate.
    hysteresis : float
        Hysteresis state ``h`` in [-1, 1]: +1 on the charge branch, -1 on the
        discharge branch, 0 half way (the pristine cell).

    Returns
    -------
    float
        OCV in V, within ``[params.v_floor, params.v_ceiling]``.
    """
    if math.isnan(soc) or not -1.0 <= hysteresis <= 1.0:
        raise ValueError(f"need a numeric soc and hysteresis in [-1, 1], got {soc!r}, {hysteresis!r}")
    return _table(params).evaluate(soc, hysteresis)[0]


# Preset tables: (soc, charge-branch OCV, discharge-branch OCV). The knots just
# outside [0, 1] are the saturated region running to the physical bounds.
_SI_LI_HALF_OCV = (
    (-0.02, -0.10, -0.10),  # Li plating on fully lithiated Si
    (0.000, 0.200, 0.005), (0.040, 0.250, 0.035), (0.080, 0.270, 0.055),
    (0.150, 0.290, 0.075), (0.300, 0.330, 0.100), (0.500, 0.400, 0.140),
    (0.700, 0.420, 0.180), (0.850, 0.470, 0.220), (0.940, 0.550, 0.260),
    (0.970, 0.750, 0.330), (0.985, 1.100, 0.450), (0.992, 1.600, 0.700),
    (0.996, 2.200, 1.200), (1.000, 2.900, 2.700),
    (1.02, 3.50, 3.50),  # electrolyte oxidation on delithiated Si
)
_SI_NMC811_FULL_OCV = (
    (-0.02, 0.00, 0.00),  # over-discharge: Si fully delithiated
    (0.00, 3.35, 2.60), (0.02, 3.42, 2.90), (0.05, 3.48, 3.15), (0.10, 3.55, 3.38),
    (0.20, 3.62, 3.53), (0.30, 3.68, 3.61), (0.40, 3.73, 3.67), (0.50, 3.78, 3.72),
    (0.60, 3.84, 3.78), (0.70, 3.91, 3.85), (0.80, 3.99, 3.93), (0.90, 4.09, 4.04),
    (0.97, 4.17, 4.13), (1.00, 4.23, 4.19),
    (1.02, 5.00, 5.00),  # overcharge: electrolyte oxidation, Li plating
)


def _preset(rows: tuple[tuple[float, float, float], ...], **fields: object) -> CellParameters:
    soc, up, down = zip(*rows)
    return CellParameters(ocv_soc=soc, ocv_charge_V=up, ocv_discharge_V=down, **fields)


CELL_PRESETS: dict[str, CellParameters] = {
    "si-li-half": _preset(
        _SI_LI_HALF_OCV, name="si-li-half",
        description="Si vs Li half cell of seed 000 (lab micro-CT): 0.9 mg composite, 75 % Si, "
                    "3579 mAh/g; pristine at rest ~2.8 V; cycled 0-2 V at 0.04 / 0.01 mA.",
        capacity_Ah=0.9e-3 * 0.75 * 3.579, v_min=0.0, v_max=2.0, v_floor=-0.1, v_ceiling=3.5,
        r_series_ohm=100.0, r1_ohm=150.0, tau1_s=60.0, diffusion_tau_s=3600.0,
        surface_fraction=0.1, hysteresis_rate=20.0, sei_capacity_fraction=0.17,
        sei_initial_fraction=0.5, si_lithiation_sign=-1, initial_soc=1.0,
        initial_hysteresis=0.0),
    "si-li-half-deactivating": _preset(
        _SI_LI_HALF_OCV, name="si-li-half-deactivating",
        description="Si vs Li half cell of seed 000 as it behaved: most particles deactivate, "
                    "20 % of the lithiated Si delithiates (500 of 3000 mAh/g back on charge).",
        capacity_Ah=0.9e-3 * 0.75 * 3.579, v_min=0.0, v_max=2.0, v_floor=-0.1, v_ceiling=3.5,
        r_series_ohm=100.0, r1_ohm=150.0, tau1_s=60.0, diffusion_tau_s=3600.0,
        surface_fraction=0.1, hysteresis_rate=20.0, sei_capacity_fraction=0.17,
        sei_initial_fraction=0.5, si_lithiation_sign=-1, initial_soc=1.0,
        initial_hysteresis=0.0, reversible_fraction=0.2),
    "si-nmc811-full": _preset(
        _SI_NMC811_FULL_OCV, name="si-nmc811-full",
        description="Si | NMC811 full cell of seed 002 (nano-CT): 3.5 mAh/cm2 on a 1.1 mm disc; "
                    "2.5-4.3 V; C/3 charge reaches 4.3 V near 65 % SoC (002 Fig. 2d: ~50 %).",
        capacity_Ah=3.5e-3 * math.pi * 0.055 ** 2, v_min=2.5, v_max=4.3, v_floor=0.0,
        v_ceiling=5.0, r_series_ohm=8000.0, r1_ohm=4000.0, tau1_s=30.0,
        diffusion_tau_s=3600.0, surface_fraction=0.1, hysteresis_rate=30.0,
        sei_capacity_fraction=0.10, sei_initial_fraction=0.3, si_lithiation_sign=1,
        initial_soc=0.0, initial_hysteresis=0.0),
    "si-nmc-cylindrical": _preset(
        _SI_NMC811_FULL_OCV, name="si-nmc-cylindrical",
        description="Si-composite | NMC cylindrical cell of seed 004: 30 mAh, 2.68-4.2 V at 1C; "
                    "a formed commercial-style cell, so ~0.1 V of polarisation at 1C, not the "
                    "hundreds of mV of 002's 1.1 mm nano-CT disc.",
        capacity_Ah=30e-3, v_min=2.68, v_max=4.2, v_floor=0.0, v_ceiling=5.0,
        r_series_ohm=2.0, r1_ohm=1.5, tau1_s=30.0, diffusion_tau_s=1800.0, surface_fraction=0.3,
        hysteresis_rate=30.0, sei_capacity_fraction=0.0, sei_initial_fraction=0.0,
        si_lithiation_sign=1, initial_soc=0.0, initial_hysteresis=0.0),
}


def scaled_to_capacity(params: CellParameters, capacity_Ah: float) -> CellParameters:
    """The same chemistry in a cell of another size: capacity scaled, resistances inversely.

    A protocol written for a 30 mAh cell (004) runs the 0.033 mAh preset chemistry scaled up:
    electrode area grows with capacity, so every resistance shrinks by the same factor and the
    cell sees the same voltages at the same C-rates. Time constants are unchanged.

    Raises
    ------
    ValueError
        If ``capacity_Ah`` is not a positive finite number.
    """
    if not (math.isfinite(capacity_Ah) and capacity_Ah > 0):
        raise ValueError(f"capacity must be a positive number of Ah, got {capacity_Ah!r}")
    k = capacity_Ah / params.capacity_Ah
    if abs(k - 1.0) < 1e-12:
        return params
    return replace(params, capacity_Ah=capacity_Ah, r_series_ohm=params.r_series_ohm / k,
                   r1_ohm=params.r1_ohm / k)


def get_preset(name: str) -> CellParameters:
    """Return the preset ``name`` (a key of :data:`CELL_PRESETS`).

    Raises
    ------
    ValueError
        If ``name`` is unknown; the message lists the valid names.
    """
    try:
        return CELL_PRESETS[name]
    except KeyError:
        valid = ", ".join(sorted(CELL_PRESETS))
        raise ValueError(f"unknown cell preset {name!r}; valid presets: {valid}") from None
