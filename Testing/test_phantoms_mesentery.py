"""Mesentery and visceral fat in the phantoms: thinner bowel, small loops, vessels and strands in the fat."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

from PancreasSegLib.phantoms import mesentery
from PancreasSegLib.phantoms.anatomy import sample_anatomy
from PancreasSegLib.phantoms.generator import _coarse_grid, _draw, make_phantom
from PancreasSegLib.phantoms.render import _body, render_background
from PancreasSegLib.phantoms.shapes import Grid


def _arrays(pair):
    return [sitk.GetArrayFromImage(x) for x in pair]


def test_mesentery_is_reproducible_and_leaves_the_other_phantoms_alone():
    a = _arrays(make_phantom(5, preset="small", mesentery=True))
    b = _arrays(make_phantom(5, preset="small", mesentery=True))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    for options in ({}, {"randomize": True, "vary_anatomy": True}):
        without = _arrays(make_phantom(5, preset="small", **options))
        off = _arrays(make_phantom(5, preset="small", mesentery=False, **options))
        assert all(np.array_equal(x, y) for x, y in zip(without, off))
    plain = _arrays(make_phantom(5, preset="small"))
    assert not np.array_equal(a[0], plain[0])
    assert np.array_equal(a[1], plain[1])  # the gland itself is the same; only what is around it changes


def test_vary_thins_the_bowel_and_draws_loops_and_branches_from_the_mesenteric_vessels():
    anatomy = sample_anatomy(np.random.default_rng(3))
    bowel = anatomy.small_bowel.ra.copy()
    drawn = mesentery.vary(anatomy, np.random.default_rng(4))
    assert anatomy.mesentery is drawn
    factor = drawn["bowel_calibre"]
    assert mesentery.BOWEL_CALIBRE[0] <= factor <= mesentery.BOWEL_CALIBRE[1]
    assert np.allclose(anatomy.small_bowel.ra, bowel * factor)
    assert mesentery.EXTRA_LOOPS[0] <= len(drawn["loops"]) <= mesentery.EXTRA_LOOPS[1]
    assert len(drawn["branches"]) >= mesentery.BRANCHES[0]
    trunks = np.vstack([anatomy.vessels["sma"][0].points, anatomy.vessels["smv"][0].points])
    starts = np.array([path[0] for path, _, _ in drawn["branches"]])
    on_trunk = np.min(np.linalg.norm(starts[:, None] - trunks[None], axis=2), axis=1) < 1e-6
    assert on_trunk.sum() >= mesentery.BRANCHES[0] // 2


def _render(seed: int, with_mesentery: bool):
    (background_rng, *_), anatomy, shift, geometry = _draw(seed, None, None, None, False, "default",
                                                           mesentery=with_mesentery)
    body_lo, body_hi = anatomy.body_bounds()
    grid = _coarse_grid(geometry, shift, body_lo, body_hi, 2.0)
    render_background(anatomy, grid, background_rng)
    cavity = _body(anatomy, Grid(grid.lo, grid.lo + grid.step * (np.array(grid.hu.shape[::-1]) - 1), grid.step),
                   np.zeros(grid.hu.shape, dtype=np.float32))
    return grid.hu, cavity


def test_the_mesentery_fills_the_visceral_fat_and_nothing_outside_it():
    (plain, cavity), (filled, _) = _render(11, False), _render(11, True)
    changed = np.abs(filled - plain) > 0.5
    # Nothing outside the abdominal cavity moves: wall, subcutaneous fat, table (bones and back muscles
    # are painted over the cavity's edge, so they are left out of the comparison).
    assert not changed[~cavity & (plain < 300)].any()
    fat_before = (plain > -250) & (plain < -40)
    assert changed[fat_before].mean() > 0.5  # the fat gets texture, strands and vessels
    # Some former fat now holds soft tissue or vessel density (loops, branches, septa) ...
    denser = fat_before & (filled > 0)
    assert denser.sum() > 200
    # ... and there is more fat than before where the bowel shrank.
    assert ((filled > -250) & (filled < -40)).sum() > 0.9 * fat_before.sum()


def test_the_fat_rim_separates_the_gland_from_soft_tissue_around_it():
    anatomy = sample_anatomy(np.random.default_rng(8))
    lo, hi = anatomy.pancreas_bounds(margin=10)
    grid = Grid(lo, hi, 1.0, fill=40.0)
    cavity = np.ones(grid.hu.shape, dtype=bool)
    mesentery._fat_rim(anatomy, grid, cavity, 4.0, np.random.default_rng(0))
    zz, yy, xx = np.meshgrid(grid.zs, grid.ys, grid.xs, indexing="ij")
    pts = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)
    s = np.minimum(anatomy.pancreas.sdf(pts, reach=12)[0], anatomy.uncinate.sdf(pts, reach=12)[0]).reshape(grid.hu.shape)
    fat = grid.hu < -40
    assert fat[(s > 0) & (s < 2.0)].mean() > 0.6  # most of the gland's surround is fat ...
    assert not fat[s > 5.0].any()  # ... only within the rim
    assert fat[s < -2.0].sum() == 0  # and the gland's inside is left for the generator to paint


def test_the_label_still_lies_on_uniform_gland_tissue():
    for seed in (2, 9):
        image, label = make_phantom(seed, preset="small", tumor=False, noise=False, mesentery=True)
        hu = sitk.GetArrayFromImage(image).astype(float)
        inner = sitk.GetArrayFromImage(sitk.BinaryErode(label == 1, [1, 1, 1])) > 0
        assert inner.sum() > 20
        assert np.std(hu[inner]) < 30


def test_the_phantom_command_makes_mesentery_cases_and_says_so(tmp_path, capsys):
    from PancreasSegLib.cli import main
    from PancreasSegLib.io.volumes import read_volume

    out = tmp_path / "Dataset994_Mesentery"
    assert main(["phantom", str(out), "--cases", "1", "--seed", "3", "--size", "small", "--mesentery"]) == 0
    meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert meta["mesentery"] is True and meta["anatomy_varied"] is False
    assert "mesentery=True" in meta["reference"] and "mesentery and visceral fat" in meta["description"]
    expected, _ = make_phantom(3, preset="small", mesentery=True)
    written = read_volume(out / "imagesTr" / "phantom_00003_0000.nii.gz")
    assert np.array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(expected))
    assert main(["phantom", str(tmp_path / "Dataset995_No"), "--family", "second", "--mesentery"]) == 2
    assert "--mesentery" in capsys.readouterr().err
