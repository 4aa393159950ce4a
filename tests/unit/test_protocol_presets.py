"""The shipped presets parse, and carry the papers' numbers (seeds/000, 002, 003, 004)."""

from __future__ import annotations

import pytest

import protocols
from controller.protocol import (CycleStep, Loop, Protocol, ScanStep, ScheduledBlock,
                                 describe_protocol, load_protocol, walk_steps)

NAMES = ["000-threshold-halfcell", "002-cccv-timeouts", "003-scheduled-halfcell",
         "004-cccv-relax-interlaced"]


def preset(name: str) -> Protocol:
    return load_protocol(protocols.preset_path(name))


def cycles(p: Protocol) -> list[CycleStep]:
    return [node for _, node in p.walk() if isinstance(node, CycleStep)]


def scans(p: Protocol) -> list[ScanStep]:
    return [node for _, node in p.walk() if isinstance(node, ScanStep)]


def test_presets_are_listed_with_titles() -> None:
    listed = protocols.list_presets()
    assert [name for name, _ in listed] == NAMES
    assert all(title and title != name for name, title in listed)
    with pytest.raises(ValueError, match="known: 000-threshold-halfcell"):
        protocols.preset_path("no-such-preset")


@pytest.mark.parametrize("name", NAMES)
def test_every_preset_parses_and_describes(name: str) -> None:
    p = preset(name)
    assert p.name == name and p.reference.startswith("seeds/")
    text = describe_protocol(p)
    assert text.startswith(f"Protocol {name}") and "safety:" in text


def test_000_threshold_half_cell() -> None:
    p = preset("000-threshold-halfcell")
    assert p.cell_preset == "si-li-half-deactivating"
    assert p.capacity_Ah == pytest.approx(2.4e-3, rel=0.02)  # 0.675 mg Si x 3579 mAh/g
    assert (p.scan.projections, p.scan.range_deg, p.scan.exposure_s, p.scan.preset) == (
        800, 360.0, 2.1, "micro-halfcell")  # the simulator's cone-beam lab micro-CT
    steps = p.steps
    assert isinstance(steps[0], ScanStep) and steps[0].label == "pristine"
    discharge = [s for s in cycles(p) if s.kind == "discharge"]
    charge = [s for s in cycles(p) if s.kind == "charge"]
    assert all(s.setpoint == pytest.approx(-0.04e-3) for s in discharge)
    assert all(s.setpoint == pytest.approx(0.01e-3) for s in charge)
    assert [s.limits[0].value for s in discharge] == [0.03, 0.02, 0.01, 0.0]
    assert [s.limits[0].value for s in charge] == [0.5, 0.7, 1.0, 1.5, 2.0]
    # every threshold step is followed by a scan: 10 tomograms with the pristine one
    for i, node in enumerate(steps):
        if isinstance(node, CycleStep):
            assert isinstance(steps[i + 1], ScanStep)
    assert sum(s.count for s in scans(p)) == 10


def test_002_cccv_with_timeouts() -> None:
    p = preset("002-cccv-timeouts")
    assert p.capacity_Ah == pytest.approx(0.033e-3)
    assert p.ocv_before_scan_s == 60.0
    s = p.scan
    assert (s.projections, s.range_deg, s.exposure_s, s.flats, s.darks) == (
        2505, 360.0, 0.020, 20, 21)
    t0, loop, dis1, dis2, noise = p.steps
    assert isinstance(t0, ScanStep) and t0.ocv_rest_s == 60.0
    assert isinstance(loop, Loop) and loop.count is None
    scans_limit, stable = loop.until
    assert (scans_limit.kind, scans_limit.value, str(scans_limit.action)) == ("scans", 6, "next")
    assert stable.kind == "didt" and stable.action.scan  # the final charging scan
    cc, cv = loop.steps
    assert cc.setpoint == pytest.approx(0.033e-3 / 3) and cc.c_rate == pytest.approx(1 / 3)
    v, t = cc.limits
    assert (v.kind, v.value, str(v.action)) == ("voltage", 4.3, "next")
    assert (t.kind, t.value, str(t.action)) == ("time", 1800.0, "scan then repeat")
    assert (cv.control, cv.setpoint) == ("voltage", 4.3)
    i, t = cv.limits
    assert (i.kind, i.value, str(i.action)) == ("current", pytest.approx(0.0033e-3),
                                                "scan then next")
    assert (t.value, str(t.action)) == (1800.0, "scan then next")
    assert dis1.setpoint == pytest.approx(-0.033e-3 / 6) and dis1.limits[0].value == 2.5
    assert str(dis1.limits[0].action) == "goto noise"
    assert dis2.limits[0].value == 2.5
    assert (noise.count, noise.noise) == (2, True)  # T8, T9


def test_003_scheduled_half_cell() -> None:
    p = preset("003-scheduled-halfcell")
    assert p.cell_preset == "si-li-half"
    capacity = 3.579 * 0.675e-3  # 3579 mAh/g x the si-li-half cell's 0.675 mg Si
    assert p.capacity_Ah == pytest.approx(capacity)
    assert (p.scan.projections, p.scan.range_deg, p.scan.exposure_s) == (1501, 180.0, 0.1)
    rest, _pristine, block = p.steps
    assert rest.control == "ocv" and rest.duration_s == 7200.0
    assert isinstance(block, ScheduledBlock)
    assert [t / 60 for t in block.scan_times(4 * 3600)] == [15, 30, 45, 75, 105, 135, 165, 195,
                                                            225]
    lith, relax1, delith, relax2 = block.steps
    assert lith.setpoint == pytest.approx(-capacity / 8) and lith.limits[0].value == 0.005
    assert delith.setpoint == pytest.approx(capacity / 8) and delith.limits[0].value == 1.0
    assert (relax1.duration_s, relax2.duration_s) == (10.0, 60.0)


def test_004_cccv_relax_interlaced() -> None:
    p = preset("004-cccv-relax-interlaced")
    assert p.capacity_Ah == pytest.approx(0.030)
    assert (p.scan.interlaced, p.scan.range_deg, p.scan.projections // p.scan.interlaced) == (
        3, 180.0, 50)
    steps = {node.label: node for _, node in walk_steps(p.steps) if node.label}
    cc, cv, relax = steps["cc-charge"], steps["cv-charge"], steps["relax-charged"]
    assert cc.setpoint == pytest.approx(0.030) and cc.limits[0].value == 4.2  # 1C
    assert (cv.control, cv.setpoint, cv.limits[0].kind) == ("voltage", 4.2, "didt")
    assert (relax.control, relax.limits[0].kind) == ("ocv", "dvdt")
    assert steps["cc-discharge"].limits[0].value == 2.68
    assert steps["cv-discharge"].setpoint == 2.68
    assert isinstance(steps["charged"], ScanStep)
    assert (p.safety.v_min, p.safety.v_max) == (2.5, 4.3)
