"""The browser reading room, end to end in a real browser (Playwright driving Debian's chromium).

``pancreasseg review`` runs as a subprocess on two small phantoms with the bundled model, behind the warm
worker. The page is opened, a case opened, another bundled model chosen, "Segment pancreas" clicked, a region erased with a mouse drag
on the axial view, undone and redone, and "Export for training" clicked; then the dataset on disk holds the
case, its label is the edited segment, its provenance names the chosen model, and ``pancreasseg verify``
passes. Each step leaves a screenshot
in the test's folder. Skipped only where trame-slicer, Playwright or chromium is missing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import review_browser as rb
import SimpleITK as sitk

REASON = rb.missing_requirements()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"the browser test needs it: {REASON}")
MS = 1000
#: The bundled model the test picks in the drop-down (not the default one).
CHOSEN_MODEL = "pancreas-phantom-v2"


@pytest.fixture
def reading_room(tmp_path):
    cases = rb.write_cases(tmp_path / "cases")
    dataset = tmp_path / "Dataset501_Curated"
    server = rb.ReviewServer(cases, dataset, tmp_path / "server.log")
    yield server, dataset, tmp_path
    server.stop()


def test_a_case_is_segmented_corrected_and_exported_in_the_browser(reading_room):
    from playwright.sync_api import sync_playwright

    server, dataset, folder = reading_room
    shots = folder / "screenshots"
    shots.mkdir()
    with sync_playwright() as playwright:
        browser = rb.launch_browser(playwright)
        page = browser.new_page(viewport={"width": 1500, "height": 900})
        page.set_default_timeout(rb.STEP_TIMEOUT * MS)
        try:
            erased_ml = _review_one_case(page, server.url, shots)
        except Exception:
            page.screenshot(path=str(shots / "failure.png"))
            print(server.tail(), file=sys.stderr)
            raise
        finally:
            browser.close()
    _check_dataset(dataset, "dr-browser", erased_ml, CHOSEN_MODEL)


def _review_one_case(page, url: str, shots) -> float:
    """The steps of a review in the page; returns the volume (mL) the page showed after the correction."""
    from playwright.sync_api import expect

    page.goto(url)
    rows = page.locator("#worklist .v-list-item")
    expect(rows).to_have_count(2)
    expect(rows.first.locator(".case-status")).to_have_text("new")
    page.screenshot(path=str(shots / "1-worklist.png"))

    rows.first.click()
    expect(page.locator("#case-title")).to_contain_text("case_0001")
    rb.axial_view_box(page)
    page.screenshot(path=str(shots / "2-case-open.png"))

    expect(page.locator("#notice")).not_to_contain_text(CHOSEN_MODEL)
    page.locator(".v-field", has=page.locator("#model")).click()  # the field, not its hidden input
    page.locator(".v-overlay .v-list-item", has_text=f"{CHOSEN_MODEL} (bundled)").click()
    expect(page.locator("#notice")).to_contain_text(f"model {CHOSEN_MODEL}")

    page.locator("#segment").click()
    expect(page.locator("#segment")).to_have_text("Cancel")  # the run is in the background
    expect(page.locator("#volume")).to_be_visible(timeout=rb.RUN_TIMEOUT * MS)
    expect(page.locator("#segment")).to_have_text("Segment pancreas")
    expect(rows.first.locator(".case-status")).to_have_text("proposed")
    expect(page.locator("#roi")).to_contain_text("mm")
    proposed = rb.volume_ml(page)
    assert proposed > 1.0
    page.screenshot(path=str(shots / "3-segmented.png"))

    page.locator("#effect-erase").click()
    expect(page.locator("#effect-erase")).to_have_class(re.compile("v-btn--variant-flat"))
    rb.erase_stroke(page, rb.axial_view_box(page))
    erased = rb.wait_for_volume_change(page, proposed)
    assert erased < proposed
    expect(page.locator("#undo")).to_be_enabled()
    page.screenshot(path=str(shots / "4-erased.png"))

    page.locator("#undo").click()
    assert abs(rb.wait_for_volume_change(page, erased) - proposed) < 0.05
    page.screenshot(path=str(shots / "5-undone.png"))
    page.locator("#redo").click()
    assert abs(rb.wait_for_volume_change(page, proposed) - erased) < 0.05
    page.screenshot(path=str(shots / "6-redone.png"))

    expect(page.locator("#status")).to_have_value("corrected")
    page.locator("#export").click()
    expect(page.locator("#message")).to_contain_text("Exported case_0001", timeout=rb.RUN_TIMEOUT * MS)
    expect(rows.first.locator(".case-status")).to_have_text("corrected")
    expect(page.locator("#case-title")).to_contain_text("case_0002")  # on to the next case
    page.screenshot(path=str(shots / "7-exported.png"))
    return erased


def _check_dataset(dataset, reviewer: str, erased_ml: float, model: str) -> None:
    label = sitk.ReadImage(str(dataset / "labelsTr" / "case_0001.nii.gz"))
    proposal = sitk.ReadImage(str(dataset / "proposals" / "case_0001.nii.gz"))
    image = sitk.ReadImage(str(dataset / "imagesTr" / "case_0001_0000.nii.gz"))
    assert label.GetSize() == image.GetSize()
    edited, proposed = sitk.GetArrayFromImage(label), sitk.GetArrayFromImage(proposal)
    # The label is the edited segment: the proposal minus what the stroke erased, to the volume the page showed.
    assert set(np.unique(edited)) <= {0, 1}
    assert np.all(edited <= proposed) and edited.sum() < proposed.sum()
    voxel_ml = float(np.prod(label.GetSpacing())) / 1000.0
    assert abs(edited.sum() * voxel_ml - erased_ml) < 0.06
    provenance = json.loads((dataset / "provenance" / "case_0001.json").read_text())
    assert provenance["reviewer"] == reviewer and provenance["status"] == "corrected"
    assert provenance["model"]["name"] == model  # the model chosen in the page made the proposal
    assert provenance["comparison"]["edited_slices"] >= 1 and provenance["comparison"]["dice"] < 1.0
    verify = subprocess.run([sys.executable, "-m", "PancreasSegLib", "verify", str(dataset)],
                            check=False, capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
