"""The simulated programs, one short spec each: who observed what, and which products exist.

Modelled on real programs (JWST 2734 NIRISS/SOSS, JWST 1558 MIRI imaging, HST 10775 ACS/WFC),
plus an exclusive-access program (JWST 6543) and a large one for scale (JWST 1999, NIRSpec MOS).
The kinds named here are defined in `kinds.py`; docs/simulator.md describes the result.
"""

from __future__ import annotations

from dataclasses import replace

from mastfs.sim.spec import EXCLUSIVE_ACCESS, PUBLIC, Block, Header, Obs, Program

GIB = 1 << 30
ALL_GUIDE_STARS = ("gs-acq1", "gs-acq2", "gs-track", "gs-fg", "gs-fg-late", "gs-fg-stream")


def _wasp96() -> Program:
    """JWST 2734: NIRISS/SOSS time series of WASP-96, two observations of five segments."""
    soss = Header("NIRISS", "NIS", "NIS_SOSS", "CLEAR", "GR700XD", "SUBSTRIP256", "NISRAPID")
    mode = ("NIRISS/SOSS", "CLEAR;GR700XD", "timeseries")
    em = (600.0, 2800.0)
    ints = (85, 85, 85, 85, 40)
    blocks = []
    for o, (act, ngroups, t0) in enumerate(((2101, 52, 59760.53), (3101, 26, 59761.12)), 1):
        visit = f"jw02734{o:03d}001"
        segments = tuple(
            Obs(f"{visit}_0{act}_00001-seg{s:03d}_nis", 2, *mode,
                t_min=t0 + sum(ints[: s - 1]) * 0.0010, exptime=nints * 86.4, em=em,
                kinds=("uncal-tso", "rate-tso", "rateints", "cal", "x1dints", "rate.jpg",
                       "rate_thumb.png", "tso-spec2"),
                header=replace(soss, nints=nints, ngroups=ngroups,
                                 observation=o),
                shape=(2048, 256), preview=(1024, 128), thumb=(128, 16), style="soss",
                # Full segments are exactly 1 GiB (benchmarks); the ASDF extension pads them.
                dims={"rateints_size": GIB if nints == 85 else 0},
                visit=visit, seq=s, candidate=f"c{1000 + o}")
            for s, nints in enumerate(ints, 1)
        )  # fmt: skip
        level3 = Obs(
            f"jw02734-o{o:03d}_t{o:03d}_niriss_clear-gr700xd-substrip256", 3, *mode,
            t_min=t0, exptime=sum(ints) * 0.0010 * 86400 * ngroups / 52, em=em,
            kinds=("x1dints-l3", "whtlt", "tso3"),
            header=replace(soss, nints=sum(ints), ngroups=ngroups,
                             observation=o),
            style="soss", members=tuple(s.obs_id for s in segments), seq=1,
            data_kind="x1dints-l3",
        )  # fmt: skip
        blocks.append(Block((level3,), segments))
    return Program(
        "JWST", "2734", 87_602_000, "WASP-96", "STAR; EXOPLANET HOST", 1.0464, -47.3606,
        "Pontoppidan, Klaus", "JWST Early Release Observations: exoplanet transmission spectrum",
        "ERO", PUBLIC, 0.0, "1.8.2",
        names=("WASP-96", "WASP 96", "WASP96b", "WASP-96 b"),
        blocks=tuple(blocks), version="20220630t163421", visit_kinds=ALL_GUIDE_STARS, pool=True,
    )  # fmt: skip


_MIRI_FILTERS = (
    ("F560W", 5000, 6500),
    ("F770W", 6500, 8800),
    ("F1000W", 9000, 11000),
    ("F1130W", 10900, 11700),
    ("F1280W", 11600, 14000),
    ("F1500W", 13500, 16600),
    ("F1800W", 16500, 19500),
    ("F2100W", 18700, 23100),
    ("F2550W", 23000, 28000),
)


def _ring() -> Program:
    """JWST 1558: MIRI imaging of NGC 6720 in nine filters, two dithers each, one visit."""
    visit, t0 = "jw01558001001", 59811.84
    blocks = []
    for f, (filt, lo, hi) in enumerate(_MIRI_FILTERS, 1):
        miri = Header("MIRI", "MIRIMAGE", "MIR_IMAGE", filt, "N/A", "FULL", "FASTR1", ngroups=20)
        mode = ("MIRI/IMAGE", filt, "image")
        em = (float(lo), float(hi))
        dithers = tuple(
            Obs(f"{visit}_021{f:02d}_{d:05d}_mirimage", 2, *mode, t_min=t0 + f * 0.01 + d * 0.004,
                exptime=280.0, em=em, offset=(d * 1e-4, -d * 1e-4),
                kinds=("uncal", "rate", "cal-area", "cal.jpg", "cal_thumb.png", "image2"),
                header=replace(miri, exposure=d), shape=(1032, 1024),
                preview=(516, 512), thumb=(129, 128), style="ring", scale=0.11, visit=visit,
                seq=2 * f + d - 2, candidate=f"c{1000 + f}")
            for d in (1, 2)
        )  # fmt: skip
        level3 = Obs(
            f"jw01558-o001_t001_miri_{filt.lower()}", 3, *mode, t_min=t0 + f * 0.01,
            exptime=2 * 280.0, em=em, half_size=0.025,
            kinds=("i2d-var", "segm", "cat", "i2d.jpg", "i2d_thumb.png", "image3"),
            header=replace(miri, expstart=t0), shape=(1400, 1300),
            dims={"sources": 40 + f * 7}, preview=(560, 520), thumb=(140, 130), style="ring",
            scale=0.11, members=tuple(d.obs_id for d in dithers), seq=f, data_kind="i2d-var",
            jpeg_kind="i2d.jpg",
        )  # fmt: skip
        blocks.append(Block((level3,), dithers))
    return Program(
        "JWST", "1558", 87_704_000, "NGC-6720", "PLANETARY NEBULA", 283.39617, 33.02917,
        "Doe, Jane", "Imaging the Ring Nebula with MIRI", "GO", PUBLIC, 0.0, "1.8.5",
        names=("NGC 6720", "NGC6720", "M57", "M 57", "Ring Nebula", "NGC-6720", "Messier 57"),
        blocks=tuple(blocks), version="20220820t205310", visit_kinds=ALL_GUIDE_STARS, pool=True,
    )  # fmt: skip


def _abell2744() -> Program:
    """JWST 6543: NIRCam imaging under exclusive access (its asn and pool files are public)."""
    visit, t0 = "jw06543001001", 60983.42
    channels = (
        ("F150W", ("nrca1", "nrcb1"), 1330, 1670, 0.031, 0.03, 3000),
        ("F444W", ("nrcalong", "nrcblong"), 3880, 4990, 0.063, 0.06, 1500),
    )
    blocks = []
    for f, (filt, dets, lo, hi, scale, scale3, npx) in enumerate(channels, 1):
        nircam = Header("NIRCAM", "", "NRC_IMAGE", filt, "CLEAR", "FULL", "MEDIUM8", ngroups=8)
        mode = ("NIRCAM/IMAGE", f"CLEAR;{filt}", "image")
        em = (float(lo), float(hi))
        exposures = tuple(
            Obs(f"{visit}_02101_{d:05d}_{det}", 2, *mode, t_min=t0 + d * 0.013, exptime=1030.0,
                em=em, offset=(0.01 if "b" in det[3:] else -0.01, d * 2e-4),
                kinds=("uncal", "rate", "cal", "cal.jpg", "cal_thumb.png", "image2"),
                header=replace(nircam, detector=det.upper(), exposure=d),
                shape=(2048, 2048), preview=(512, 512), thumb=(128, 128), style="galaxies",
                scale=scale, visit=visit, candidate="c1000",
                seq=5 * f - 3 + i)  # the observation's number in the program
            for i, (d, det) in enumerate((d, det) for d in (1, 2) for det in dets)
        )  # fmt: skip
        level3 = Obs(
            f"jw06543-o001_t001_nircam_clear-{filt.lower()}", 3, *mode, t_min=t0,
            exptime=4 * 1030.0, em=em, half_size=0.04,
            kinds=("i2d", "segm", "cat", "i2d.jpg", "image3"),
            header=replace(nircam, detector="MULTIPLE"), shape=(npx, npx),
            dims={"sources": 300}, preview=(600, 600), style="galaxies", scale=scale3,
            no_wcs=("segm",), members=tuple(e.obs_id for e in exposures), seq=f,
        )  # fmt: skip
        blocks.append(Block((level3,), exposures))
    return Program(
        "JWST", "6543", 88_006_000, "ABELL-2744", "GALAXY CLUSTER", 3.5864, -30.3975,
        "Lovelace, Ada", "A deep NIRCam look behind a lensing cluster", "GO", EXCLUSIVE_ACCESS,
        61_400.0, "1.14.0",
        names=("Abell 2744", "ABELL-2744", "A2744", "Pandora's Cluster"),
        blocks=tuple(blocks), version="20251104t101010",
        visit_kinds=("gs-acq1", "gs-acq2", "gs-track", "gs-fg"), pool=True,
    )  # fmt: skip


def _ngc104() -> Program:
    """HST 10775: ACS/WFC imaging of 47 Tuc, two associations of four exposures."""
    assocs = (
        ("j9l960010", "F606W", ("j9l960a7q", "j9l960a9q", "j9l960abq", "j9l960adq"), 53907.18),
        ("j9l960020", "F814W", ("j9l960afq", "j9l960ahq", "j9l960ajq", "j9l960alq"), 53907.25),
    )
    em = {"F606W": (470.0, 720.0), "F814W": (690.0, 960.0)}
    blocks = []
    for n, (asn_id, filt, roots, t0) in enumerate(assocs):
        notes = ("notes",) if n == 0 else ()
        level3 = Obs(
            asn_id, 3, "ACS/WFC", filt, "image", t0, 4 * 340.0, em[filt], half_size=0.034,
            kinds=("asn", "jif", "drz", "drc", "drz.jpg", "trl-asn", "log", *notes),
            preview=(512, 500), style="cluster", scale=0.05, members=roots, data_kind="drz",
            jpeg_kind="drz.jpg",
        )  # fmt: skip
        exposures = tuple(
            Obs(root, 2, "ACS/WFC", filt, "image", t0 + k * 0.006, 340.0, em[filt],
                offset=(k * 2e-5, k * 2e-5), half_size=0.034,
                kinds=("raw", "flt", "flc", "spt", "trl", "flt.jpg"), preview=(512, 512),
                style="cluster", scale=0.05)
            for k, root in enumerate(roots)
        )  # fmt: skip
        blocks.append(Block((level3,), exposures, "level3-first"))
    return Program(
        "HST", "10775", 24_010_000, "NGC104", "STAR CLUSTER; GLOBULAR", 6.02233, -72.08144,
        "Sarajedini, Ata", "An ACS Survey of Galactic Globular Clusters", "GO", PUBLIC, 0.0,
        "CALACS 10.3.5",
        names=("NGC 104", "NGC104", "47 Tuc", "47 Tucanae"), blocks=tuple(blocks),
    )  # fmt: skip


N_1999_OBSERVATIONS = 45
SOURCES_PER_OBSERVATION = 25


def _goods_s() -> Program:
    """JWST 1999 (invented, for scale): a NIRSpec MOS survey, 45 visits of 25 sources each."""
    mode = ("NIRSPEC/MSA", "F290LP;G395M", "spectrum")
    em = (2870.0, 5100.0)
    mos = Header("NIRSPEC", "", "NRS_MSASPEC", "F290LP", "G395M", "FULL", "NRSIRS2RAPID",
                 ngroups=10)  # fmt: skip
    msa = {"shutters": 3 * SOURCES_PER_OBSERVATION * 4, "sources": SOURCES_PER_OBSERVATION}
    blocks = []
    source = 0
    for o in range(1, N_1999_OBSERVATIONS + 1):
        visit, t0 = f"jw01999{o:03d}001", 59948.0 + o * 0.37
        dx, dy = (o % 9 - 4) * 0.02, (o // 9 - 2) * 0.02
        exposures = tuple(
            Obs(f"{visit}_03101_{ex:05d}_{det}", 2, *mode, t_min=t0 + ex * 0.012, exptime=963.0,
                em=em, offset=(dx, dy), half_size=0.025,
                kinds=("uncal", "rate", "cal-slits", "s2d", "x1d", "cal.jpg", "cal_thumb.png",
                       "spec2"),
                header=replace(mos, detector=det.upper(), observation=o,
                                 exposure=ex),
                shape=(2048, 2048), dims=msa, preview=(256, 256), thumb=(64, 64), style="mos",
                visit=visit, seq=2 * ex - (det == "nrs1"), candidate=f"c{1000 + o}")
            for ex in range(1, 7)
            for det in ("nrs1", "nrs2")
        )  # fmt: skip
        sources = []
        for k in range(SOURCES_PER_OBSERVATION):
            source += 1
            det = "nrs1" if k % 2 == 0 else "nrs2"
            sources.append(Obs(
                f"jw01999-o{o:03d}_s{source:05d}_nirspec_f290lp-g395m", 3, *mode, t_min=t0,
                exptime=3 * 963.0, em=em,
                offset=(dx + (k % 5 - 2) * 0.003, dy + (k // 5 - 2) * 0.003), half_size=0.0002,
                kinds=("x1d-l3", "s2d-l3", "s2d.jpg", "s2d_thumb.png", "spec3"),
                header=replace(mos, detector=det.upper(), observation=o),
                preview=(520, 40), thumb=(130, 10), style="s2d",
                members=tuple(f"{visit}_03101_{ex:05d}_{det}" for ex in (1, 2, 3)), seq=source,
                data_kind="x1d-l3",
            ))  # fmt: skip
        blocks.append(Block(tuple(sources), exposures, "members-first"))
    return Program(
        "JWST", "1999", 89_000_000, "GOODS-S", "GALAXY; HIGH REDSHIFT", 53.1625, -27.7914,
        "Hopper, Grace", "A NIRSpec MOS census of galaxies at cosmic noon", "GO", PUBLIC, 0.0,
        "1.11.4",
        names=("GOODS-S", "GOODS South", "CDFS", "Chandra Deep Field South"),
        blocks=tuple(blocks), version="20230104t012345",
        visit_kinds=("msa", "gs-acq1", "gs-track", "gs-fg"), pool=True, pool_early=True,
    )  # fmt: skip


def programs() -> tuple[Program, ...]:
    """Every program of the catalog, in catalog order."""
    return (_wasp96(), _ring(), _ngc104(), _abell2744(), _goods_s())
