"""Phantom presets for the papers' two scales: "micro" (000, lab micro-CT) and "nano" (002).

Lengths in µm, attenuation in 1/µm. See :mod:`sim.phantom` for the geometry and the physics
these parameters feed. Values marked "assumed" are not stated in the papers.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Attenuation:
    """Linear attenuation coefficients of the phantom's materials, in 1/µm."""

    si: float  #: pristine crystalline Si
    lixsi: float  #: fully lithiated LixSi (the lithiated phase)
    matrix: float  #: carbon black / binder domain
    pore: float  #: electrolyte-filled pore in the electrode
    collector: float  #: current collector
    separator: float  #: separator solid (fibres / membrane)
    electrolyte: float  #: liquid electrolyte beyond the separator and in its pores


@dataclass(frozen=True)
class PhantomPreset:
    """Physical parameters of a phantom family; lengths in µm, attenuation in 1/µm.

    ``voxel_size_um`` and ``shape`` are the default simulation grid; a voxel-size override keeps
    the physical field of view (``shape * voxel_size_um``) and shrinks or grows the grid.
    """

    name: str
    voxel_size_um: float
    shape: tuple[int, int, int]
    paper_voxel_size_um: float
    margin_um: float  #: air below the collector
    collector_um: float
    electrode_um: float  #: pristine electrode thickness
    separator_um: float
    diameter_range_um: tuple[float, float]  #: truncation of the particle size distribution
    diameter_median_um: float  #: median of the (truncated) log-normal distribution
    diameter_log_sigma: float
    volume_fraction: float  #: Si volume fraction of the layer when n_particles is not given
    class_fractions: tuple[float, float, float]  #: (active, deactivated, inactive)
    core_shell_fraction: float  #: the rest lithiate in network mode
    mu: Attenuation
    expansion: float  #: particle volume factor at full lithiation
    axial_strain_collector: float  #: electrode axial strain at the collector, full lithiation
    axial_strain_separator: float  #: electrode axial strain at the separator, full lithiation
    porosity: float  #: pore fraction of the electrode matrix
    pore_size_um: float  #: correlation length of the matrix / separator texture
    separator_porosity: float
    sample_radius_fraction: float = 0.45  #: sample cylinder radius / min(ny, nx)
    min_gap_fraction: float = 0.05  #: minimum gap between pristine particles / (r_i + r_j)


#: From 000: 13 % of particles inactive, 87 % lithiate, 24 % also delithiate (active).
_CLASS_FRACTIONS = (0.24, 0.63, 0.13)

PHANTOM_PRESETS: MappingProxyType[str, PhantomPreset] = MappingProxyType({
    # 000: lab micro-CT, Si vs Li half cell; cone beam, 5.76 um voxels; a 0.2 mm high composite
    # block of 125-180 um Si particles (Si:carbon black:PVDF 75:15:10) on a 5 um Ti foil.
    # Attenuation: ~20 keV effective lab spectrum (Si 2.33 g/cm3 x 4.5 cm2/g); LixSi = Si / 3
    # plus ~6 % for Li; the thin Ti foil is lumped with its Cu support into a 4-voxel collector
    # so the rigid reference is resolved (Ti damped for a beam-hardened spectrum). Separator
    # 25 um (Celgard, typical: assumed). Expansion x3 ("~300 %", 000); electrode strains from
    # 002 (34 % collector side, ~50-60 % separator side); 128^3 holds about 5 particles: widen
    # the grid (e.g. shape=(128, 320, 320)) for more. Volume fraction: what random packing of
    # these spheres reaches in a layer barely thicker than they are.
    "micro": PhantomPreset(
        name="micro", voxel_size_um=5.76, shape=(128, 128, 128), paper_voxel_size_um=5.76,
        margin_um=3 * 5.76, collector_um=4 * 5.76, electrode_um=200.0, separator_um=25.0,
        diameter_range_um=(125.0, 180.0), diameter_median_um=150.0, diameter_log_sigma=0.12,
        volume_fraction=0.22, class_fractions=_CLASS_FRACTIONS, core_shell_fraction=0.10,
        mu=Attenuation(si=1.0e-3, lixsi=3.5e-4, matrix=1.4e-4, pore=1.0e-4, collector=4.0e-3,
                       separator=1.2e-4, electrolyte=1.0e-4),
        expansion=3.0, axial_strain_collector=0.34, axial_strain_separator=0.55,
        porosity=0.4, pore_size_um=15.0, separator_porosity=0.4,
    ),
    # 002: synchrotron nano-CT (holo-tomography), Si|NMC811; 50 nm voxels in the paper, 0.25 um
    # by default here (physical sizes fixed). Electrode 20.7 um of 3-7 um Si (89 wt%) on Cu.
    # Attenuation: phase-retrieved effective scale, proportional to electron density, so
    # lithiated Si (0.030) looks like the binder (0.031) as in the paper; Cu is damped to keep
    # line integrals in range. Collector and separator thicknesses are not stated: assumed.
    # Core-shell ~10 % of particles; thickness 20.7 -> 30.0 um at 85 % SoC; strains 34 % at the
    # collector side, ~50 % (locally ~60 %) at the separator side; in-plane strain < 3 % is
    # neglected. Expansion x3 ("~300 % for fully lithiated pure Si").
    "nano": PhantomPreset(
        name="nano", voxel_size_um=0.25, shape=(160, 128, 128), paper_voxel_size_um=0.05,
        margin_um=1.0, collector_um=4.0, electrode_um=20.7, separator_um=20.0,
        diameter_range_um=(3.0, 7.0), diameter_median_um=5.0, diameter_log_sigma=0.2,
        volume_fraction=0.30, class_fractions=_CLASS_FRACTIONS, core_shell_fraction=0.10,
        mu=Attenuation(si=0.050, lixsi=0.030, matrix=0.031, pore=0.029, collector=0.10,
                       separator=0.024, electrolyte=0.029),
        expansion=3.0, axial_strain_collector=0.34, axial_strain_separator=0.55,
        porosity=0.35, pore_size_um=0.8, separator_porosity=0.5,
    ),
})
