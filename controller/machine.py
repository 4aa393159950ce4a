"""The operando state machine, declared as data (transitions).

States say what the cell and the instrument are doing; triggers are the decisions the
controller (``controller.decider``) takes at polls and after scans. The machine only decides:
its callbacks choose the potentiostat command of the state entered, they never touch a device.

* ``DONE`` is terminal: nothing leaves it.
* ``FAULT`` is reachable from every state but ``DONE`` and is final too: the cell is at open
  circuit and the experiment needs an operator.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from transitions import Machine


class State(str, Enum):
    """What the experiment is doing."""

    IDLE = "idle"                # not started
    CHARGING = "charging"        # constant current, positive
    DISCHARGING = "discharging"  # constant current, negative
    HOLDING = "holding"          # constant voltage
    RESTING = "resting"          # open circuit, a rest step
    SCAN_REST = "scan_rest"      # open circuit before a scan
    SCANNING = "scanning"        # tomography scan under way (cell at open circuit)
    DONE = "done"                # protocol complete (terminal)
    FAULT = "fault"              # safety trip or lost instrument (final)


#: States in which the potentiostat drives (or rests) the cell for a protocol step.
CYCLING = (State.CHARGING, State.DISCHARGING, State.HOLDING, State.RESTING)
_BEFORE_STEP = (State.IDLE, *CYCLING, State.SCAN_REST, State.SCANNING)
_LIVE = tuple(s for s in State if s not in (State.DONE, State.FAULT))

#: The transition table. Entering a cycling state applies the step's setpoint (see the model's
#: ``on_enter_*`` callbacks); a reflexive transition (e.g. charge -> charge for the next CC step
#: or a ``repeat``) re-enters and so re-applies it.
TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "charge", "source": list(_BEFORE_STEP), "dest": State.CHARGING},
    {"trigger": "discharge", "source": list(_BEFORE_STEP), "dest": State.DISCHARGING},
    {"trigger": "hold", "source": list(_BEFORE_STEP), "dest": State.HOLDING},
    {"trigger": "rest", "source": list(_BEFORE_STEP), "dest": State.RESTING},
    # from SCAN_REST: a resumed experiment starts its interrupted open-circuit rest over
    {"trigger": "prepare_scan", "source": [State.IDLE, *CYCLING, State.SCAN_REST, State.SCANNING],
     "dest": State.SCAN_REST},
    {"trigger": "start_scan", "source": [State.SCAN_REST, State.SCANNING], "dest": State.SCANNING},
    {"trigger": "finish", "source": list(_LIVE), "dest": State.DONE},
    {"trigger": "fault", "source": list(_LIVE), "dest": State.FAULT},
]

#: Trigger that enters the state for each kind of cycling step.
STEP_TRIGGER = {"charge": "charge", "discharge": "discharge", "hold": "hold", "rest": "rest"}


def attach_machine(model: Any, initial: State = State.IDLE) -> Machine:
    """Give ``model`` the operando states and triggers.

    ``model`` provides ``after_state_change`` (checkpointing, logging) and
    ``on_machine_exception`` (turns a bug in a callback into the fault state); see
    ``controller.decider.ProtocolController``.
    """
    return Machine(model=model, states=State, transitions=TRANSITIONS, initial=initial,
                   auto_transitions=False, after_state_change="after_state_change",
                   on_exception="on_machine_exception", send_event=True, queued=False)
