"""Equivalent-circuit model of the battery cells in the operando experiments.

Conventions
-----------
* Current in A. **Positive current charges the cell** (its voltage rises).
* Voltage in V, charge in Ah, time in s.
* ``soc`` is the cell's state of charge in [0, 1]; it rises on charge.
* ``si_lithiation`` in [0, 1] is the normalised lithiation of the silicon
  electrode (1 = the most lithiated state the cell reaches in normal operation).
  In the Si vs Li half cell charging (positive current) *de*lithiates Si (the
  papers call lithiation "discharge"), so ``si_lithiation = 1 - soc``; in the
  Si | NMC811 full cell charging lithiates Si, so ``si_lithiation = soc``.
  With trapped lithium (below) ``si_lithiation`` is that of the *active* particles.
* ``charge_Ah`` is the net signed charge the instrument passed, the integral of
  current over time, whatever the cell did with it.

Model
-----
Terminal voltage ``V = OCV(s_surf, h) + v1 + I * R_s``, clamped to the physical
bounds ``[v_floor, v_ceiling]``:

* ``OCV(soc, h)`` mixes a charge branch and a discharge branch (piecewise
  linear tables) by the hysteresis state ``h`` in [-1, 1]; ``h`` relaxes toward
  ``sign(I)`` in proportion to the charge passed (Plett's model,
  ``dh/dt = gamma |I| / Q (sign(I) - h)``).
* ``v1``: one RC pair (``r1_ohm``, ``tau1_s``), the charge-transfer overpotential.
* Solid-state diffusion: a two-tank model. The surface holds a fraction
  ``surface_fraction`` of the capacity; its state of charge
  ``s_surf = soc + (1 - alpha) u`` leads the bulk while current flows
  (``du/dt = I / (alpha Q) - u / (alpha tau_d)``). Under a constant-voltage hold
  the current then decays with a time constant of about
  ``tau_d + (R_s + R_1) Q / (dOCV/dsoc)`` (tens of minutes), and after a
  current step the voltage keeps relaxing for minutes.
* First-cycle loss: while Si is being lithiated, part of the current builds the
  SEI instead, ``dQ_sei = k (1 - Q_sei / Q_sei_max) |dQ|``, so the loss
  saturates at ``sei_capacity_fraction`` of the capacity.
* Trapped lithium (the 000 paper's deactivated particles): only a fraction
  ``r = reversible_fraction`` of the Si takes part in delithiation. Lithiation fills every
  reacting particle together; on delithiation the deactivated share ``1 - r`` keeps the
  lithium it had at the running peak ``p`` of the total lithiation ``s``, so the active
  particles' lithiation is ``x = (s - (1 - r) p) / r`` and the OCV follows ``x``. A half
  cell then reaches its delithiated voltage after ``r p`` of the capacity, as in 000 (500 of
  3000 mAh/g back on charge).
* Forced past full or empty, ``soc`` saturates at the ends of the OCV table
  (a small margin outside [0, 1], where the table runs to the physical bounds);
  the excess charge goes to side reactions (Li plating, electrolyte oxidation).

Under constant current and at open circuit every update is exact for any time
step; under constant voltage the current is solved implicitly on sub-steps
bounded by a fraction of the time constants and of the SoC change.

Parameters and presets live in :mod:`sim.cell_params` and are re-exported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.cell_params import (
    CELL_PRESETS,
    CellParameters,
    OcvTable,
    get_preset,
    open_circuit_voltage,
)

__all__ = [
    "CELL_PRESETS",
    "CellModel",
    "CellParameters",
    "CellState",
    "get_preset",
    "open_circuit_voltage",
]

_S_PER_H = 3600.0
_CV_MAX_SUBSTEP_S = 30.0
_CV_MAX_DSOC = 0.002  # per sub-step: the OCV is linearised over one sub-step
_DEFAULT_LIMIT_C = 2.0
#: Internal fields that fully determine the model's future (with its parameters).
_STATE_FIELDS = ("t", "soc", "u", "v1", "h", "charge", "sei", "side", "mode", "setpoint", "limit",
                 "peak")


@dataclass(frozen=True)
class CellState:
    """Snapshot of a :class:`CellModel`.

    Attributes
    ----------
    time_s : float
        Cell time, s.
    voltage, current : float
        Terminal voltage, V; current, A (positive charges).
    charge_Ah : float
        Net signed charge passed since the start, Ah (integral of current).
    soc, si_lithiation, si_lithiation_peak : float
        State of charge; Si lithiation and its running maximum (all in [0, 1]).
    mode : str
        "cc", "cv" or "ocv".
    setpoint : float or None
        A in "cc", V in "cv", None in "ocv".
    current_limit : float
        Compliance current of the CV mode, A.
    sei_charge_Ah : float
        Charge consumed by SEI growth, Ah.
    side_charge_Ah : float
        Charge taken by side reactions (Li plating, electrolyte oxidation)
        once forced past soc 0 or 1, Ah (Si-lithiating direction positive).
    hysteresis : float
        Hysteresis state ``h`` in [-1, 1].
    surface_soc : float
        SoC seen by the OCV (leads the bulk while current flows).
    ocv : float
        Open-circuit voltage at the surface SoC, V.
    """

    time_s: float
    voltage: float
    current: float
    charge_Ah: float
    soc: float
    si_lithiation: float
    si_lithiation_peak: float
    mode: str
    setpoint: float | None
    current_limit: float
    sei_charge_Ah: float
    side_charge_Ah: float
    hysteresis: float
    surface_soc: float
    ocv: float


def _finite(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return value


class CellModel:
    """A cell under a potentiostat: constant current, constant voltage or open circuit.

    Not thread-safe: the device that owns it serialises access.

    Parameters
    ----------
    params : CellParameters
        The cell (see :data:`CELL_PRESETS`).
    soc : float, optional
        Initial state of charge in [0, 1]; default ``params.initial_soc``.
    time_s : float, optional
        Initial cell time, s (default 0).
    """

    def __init__(self, params: CellParameters, *, soc: float | None = None,
                 time_s: float = 0.0) -> None:
        soc0 = params.initial_soc if soc is None else _finite(soc, "soc")
        if not 0.0 <= soc0 <= 1.0:
            raise ValueError(f"initial soc must be in [0, 1], got {soc0!r}")
        self.params = params
        self._ocv_table = OcvTable(params)
        self._q_as = params.capacity_Ah * _S_PER_H
        self._soc_lo, self._soc_hi = params.ocv_soc[0], params.ocv_soc[-1]
        self._alpha = params.surface_fraction
        self._inv_tau_u = 1.0 / (params.surface_fraction * params.diffusion_tau_s)
        self._sei_max = params.sei_capacity_fraction * params.capacity_Ah
        self._cv_dt_max = min(_CV_MAX_SUBSTEP_S, 0.25 * params.tau1_s,
                              0.25 / self._inv_tau_u)
        self._t = _finite(time_s, "time_s")
        self._soc, self._u, self._v1 = soc0, 0.0, 0.0
        self._h = params.initial_hysteresis
        self._charge = self._sei = self._side = 0.0
        self._mode, self._setpoint = "ocv", None
        self._limit = _DEFAULT_LIMIT_C * params.capacity_Ah
        self._peak = self._total_lithiation()
        self._current = self._voltage = 0.0
        self._refresh()

    # ----------------------------------------------------------- commands
    def set_current(self, amps: float) -> None:
        """Galvanostatic (CC) mode at ``amps`` A (positive charges)."""
        self._mode, self._setpoint = "cc", _finite(amps, "current")
        self._refresh()

    def set_voltage(self, volts: float, current_limit: float | None = None) -> None:
        """Potentiostatic (CV) mode.

        Parameters
        ----------
        volts : float
            Terminal voltage setpoint, V. Beyond the physical bounds the
            current runs at the limit while the voltage sits at the bound.
        current_limit : float, optional
            Compliance current magnitude, A (> 0); default 2C.
        """
        limit = _DEFAULT_LIMIT_C * self.params.capacity_Ah if current_limit is None \
            else _finite(current_limit, "current_limit")
        if limit <= 0.0:
            raise ValueError(f"current_limit must be > 0 A, got {limit!r}")
        self._mode, self._setpoint, self._limit = "cv", _finite(volts, "voltage"), limit
        self._refresh()

    def open_circuit(self) -> None:
        """Open circuit (OCV): zero current; the voltage relaxes toward the OCV."""
        self._mode, self._setpoint = "ocv", None
        self._refresh()

    def advance_to(self, time_s: float) -> None:
        """Integrate to the absolute cell time ``time_s`` (s); no-op if not later."""
        dt = _finite(time_s, "time_s") - self._t
        if dt <= 0.0:
            return
        if self._mode == "cv":
            self._advance_cv(dt)
        else:
            self._apply_current(self._setpoint or 0.0, dt)
            self._refresh()
        self._t = float(time_s)

    def advance(self, dt: float) -> None:
        """Integrate forward by ``dt`` seconds (>= 0)."""
        if not dt >= 0.0:
            raise ValueError(f"dt must be >= 0 s, got {dt!r}")
        self.advance_to(self._t + dt)

    # ---------------------------------------------------------- integration
    def _apply_current(self, amps: float, dt: float) -> None:
        """Exact update of every state for a constant current over ``dt``."""
        r1 = self.params.r1_ohm
        self._v1 = amps * r1 + (self._v1 - amps * r1) * math.exp(-dt / self.params.tau1_s)
        u_inf = amps * self.params.diffusion_tau_s / self._q_as
        self._u = u_inf + (self._u - u_inf) * math.exp(-dt * self._inv_tau_u)
        if amps == 0.0:
            return
        q_as = amps * dt
        target = 1.0 if amps > 0.0 else -1.0
        self._h = target + (self._h - target) * math.exp(
            -self.params.hysteresis_rate * abs(q_as) / self._q_as)
        self._charge += q_as / _S_PER_H
        self._move_lithium(q_as / _S_PER_H)

    def _move_lithium(self, q_ah: float) -> None:
        """Share charge ``q_ah`` (Ah) between SEI growth, the Si and side reactions."""
        p = self.params
        sign = p.si_lithiation_sign
        d_sei = 0.0
        if q_ah * sign > 0.0 and self._sei < self._sei_max:
            # exact integral of dQ_sei = k (1 - Q_sei/Q_max) |dQ| over this charge
            gap = (self._sei_max - self._sei) * math.exp(
                -p.sei_initial_fraction * abs(q_ah) / self._sei_max)
            d_sei = self._sei_max - gap - self._sei
            self._sei += d_sei
        soc = self._soc + (q_ah - sign * d_sei) / p.capacity_Ah
        lo, hi = self._soc_bounds()
        clipped = min(max(soc, lo), hi)
        self._side += sign * (soc - clipped) * p.capacity_Ah
        self._soc = clipped
        lith = self._total_lithiation()
        if lith > self._peak:
            self._peak = lith

    def _advance_cv(self, dt: float) -> None:
        remaining = dt
        while remaining > 1e-9:
            step = self._cv_dt_max
            if self._current != 0.0:
                step = min(step, _CV_MAX_DSOC * self._q_as / abs(self._current))
            step = min(step, remaining)
            self._cv_substep(step)
            remaining -= step

    def _cv_substep(self, dt: float) -> None:
        """One implicit sub-step: the constant current that meets the setpoint at its end."""
        p = self.params
        alpha, u0, v1_0 = self._alpha, self._u, self._v1
        e0, slope = self._ocv_table.evaluate(self._ocv_soc(self._soc + (1.0 - alpha) * u0), self._h)
        slope *= self._ocv_gain()
        e1 = math.exp(-dt / p.tau1_s)
        eu = math.exp(-dt * self._inv_tau_u)
        a_u = p.diffusion_tau_s / self._q_as * (1.0 - eu)  # d(u_end)/dI
        # setpoint = OCV(linearised) + v1_end + I R_s, each linear in I
        num = self._setpoint - e0 - slope * (1.0 - alpha) * u0 * (eu - 1.0) - v1_0 * e1
        den = slope * (dt / self._q_as + (1.0 - alpha) * a_u) + p.r1_ohm * (1.0 - e1) \
            + p.r_series_ohm
        amps = num / den
        limited = abs(amps) > self._limit
        if limited:
            amps = math.copysign(self._limit, amps)
        self._apply_current(amps, dt)
        if limited or not p.v_floor <= self._setpoint <= p.v_ceiling:
            self._voltage = self._terminal_voltage(amps)
        else:
            self._voltage = self._setpoint
        self._current = amps

    def _terminal_voltage(self, amps: float) -> float:
        ocv = self._ocv_table.evaluate(self._ocv_soc(self.surface_soc), self._h)[0]
        v = ocv + self._v1 + amps * self.params.r_series_ohm
        return min(max(v, self.params.v_floor), self.params.v_ceiling)

    def _refresh(self) -> None:
        """Instantaneous current and voltage for the present state and mode."""
        if self._mode == "cv":
            ocv = self._ocv_table.evaluate(self._ocv_soc(self.surface_soc), self._h)[0]
            amps = (self._setpoint - ocv - self._v1) / self.params.r_series_ohm
            self._current = max(-self._limit, min(self._limit, amps))
        else:
            self._current = self._setpoint or 0.0
        self._voltage = self._terminal_voltage(self._current)

    # ---------------------------------------------------------- observables
    @property
    def time_s(self) -> float:
        """Cell time, s."""
        return self._t

    @property
    def voltage(self) -> float:
        """Terminal voltage, V."""
        return self._voltage

    @property
    def current(self) -> float:
        """Current, A (positive charges)."""
        return self._current

    @property
    def charge_Ah(self) -> float:
        """Net signed charge passed since the start (integral of current), Ah."""
        return self._charge

    @property
    def soc(self) -> float:
        """State of charge in [0, 1]."""
        return min(max(self._soc, 0.0), 1.0)

    @property
    def surface_soc(self) -> float:
        """SoC of the surface tank, the one the OCV sees (may leave [0, 1])."""
        return self._soc + (1.0 - self._alpha) * self._u

    @property
    def si_lithiation(self) -> float:
        """Lithiation of the active Si particles in [0, 1] (see the module docstring)."""
        s = self._total_lithiation()
        r = self.params.reversible_fraction
        if r >= 1.0 or s >= self._peak:
            return s
        return min(max((s - (1.0 - r) * self._peak) / r, 0.0), 1.0)

    @property
    def si_lithiation_total(self) -> float:
        """Lithiation of all the Si, trapped lithium included, in [0, 1]."""
        return self._total_lithiation()

    @property
    def si_lithiation_peak(self) -> float:
        """Largest total Si lithiation reached so far (what deactivated particles keep)."""
        return self._peak

    def _total_lithiation(self) -> float:
        soc = self.soc
        return soc if self.params.si_lithiation_sign > 0 else 1.0 - soc

    def _ocv_soc(self, soc: float) -> float:
        """The SoC the OCV sees: that of the active particles (trapped lithium excluded)."""
        r = self.params.reversible_fraction
        sign = self.params.si_lithiation_sign
        s = soc if sign > 0 else 1.0 - soc
        if r >= 1.0 or s >= self._peak:
            return soc
        x = (s - (1.0 - r) * self._peak) / r
        return x if sign > 0 else 1.0 - x

    def _ocv_gain(self) -> float:
        """d(OCV soc) / d(soc): 1/r while the active particles alone give up lithium."""
        r = self.params.reversible_fraction
        return 1.0 if r >= 1.0 or self._total_lithiation() >= self._peak else 1.0 / r

    def _soc_bounds(self) -> tuple[float, float]:
        """Raw SoC limits: the OCV table's ends, and no delithiation past the active Si's."""
        r = self.params.reversible_fraction
        if r >= 1.0:
            return self._soc_lo, self._soc_hi
        sign = self.params.si_lithiation_sign
        lith_lo = self._soc_lo if sign > 0 else 1.0 - self._soc_hi  # table end, lithiation scale
        s_min = r * lith_lo + (1.0 - r) * self._peak
        if sign > 0:
            return max(self._soc_lo, s_min), self._soc_hi
        return self._soc_lo, min(self._soc_hi, 1.0 - s_min)

    @property
    def mode(self) -> str:
        """"cc", "cv" or "ocv"."""
        return self._mode

    @property
    def setpoint(self) -> float | None:
        """A in "cc", V in "cv", None in "ocv"."""
        return self._setpoint

    @property
    def sei_charge_Ah(self) -> float:
        """Charge consumed by SEI growth, Ah."""
        return self._sei

    @property
    def side_charge_Ah(self) -> float:
        """Charge taken by side reactions (plating, oxidation) past full/empty, Ah.

        Counted positive in the Si-lithiating direction; it includes the
        saturation margin beyond soc 0 or 1, so that lithium is conserved.
        """
        beyond = self._soc - min(max(self._soc, 0.0), 1.0)
        return self._side + self.params.si_lithiation_sign * beyond * self.params.capacity_Ah

    @property
    def hysteresis(self) -> float:
        """Hysteresis state in [-1, 1]."""
        return self._h

    def snapshot(self) -> CellState:
        """Return an immutable :class:`CellState` of the present state."""
        return CellState(
            time_s=self._t, voltage=self._voltage, current=self._current,
            charge_Ah=self._charge, soc=self.soc, si_lithiation=self.si_lithiation,
            si_lithiation_peak=self._peak, mode=self._mode, setpoint=self._setpoint,
            current_limit=self._limit, sei_charge_Ah=self._sei, side_charge_Ah=self.side_charge_Ah,
            hysteresis=self._h, surface_soc=self.surface_soc,
            ocv=self._ocv_table.evaluate(self._ocv_soc(self.surface_soc), self._h)[0])

    def state_dict(self) -> dict[str, object]:
        """The full internal state as plain JSON-able values (see :meth:`from_state`).

        The simulated instrument persists this so a restarted controller finds the cell where a
        real one would be: a real cell keeps its charge when the software dies.
        """
        return {"params": self.params.name, **{k: getattr(self, "_" + k) for k in _STATE_FIELDS}}

    @classmethod
    def from_state(cls, params: CellParameters, state: dict[str, object]) -> "CellModel":
        """A model of ``params`` restored from :meth:`state_dict` output.

        Raises
        ------
        ValueError
            If the state was saved from a cell with other parameters, or a field is missing.
        """
        if state.get("params") != params.name:
            raise ValueError(f"cell state belongs to {state.get('params')!r}, not {params.name!r}")
        missing = [k for k in _STATE_FIELDS if k not in state]
        if missing:
            raise ValueError(f"cell state lacks {', '.join(missing)}")
        cell = cls(params)
        for key in _STATE_FIELDS:
            setattr(cell, "_" + key, state[key])
        cell._refresh()
        return cell

    def __repr__(self) -> str:
        return (f"CellModel({self.params.name!r}, t={self._t:.1f} s, mode={self._mode}, "
                f"V={self._voltage:.4f}, I={self._current:.3e}, soc={self.soc:.4f})")
