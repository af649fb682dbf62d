"""Training: tiny runs on tiny phantoms give loadable bundles that record their data; resume; --init; bad data."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from phantom_datasets import write_phantom_dataset

from PancreasSegLib.cli import main
from PancreasSegLib.errors import InputError
from PancreasSegLib.training.loop import Budget, Interrupted, learning_rate
from PancreasSegLib.training.run import TrainOptions, split_cases, train
from PancreasSegLib.training.workdir import LoopState, work_folder_for  # noqa: E402

SEEDS = (900, 901, 902)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    """Three small phantoms (about 2.5 mm voxels) as an nnU-Net v2 raw dataset."""
    return write_phantom_dataset(tmp_path_factory.mktemp("data") / "Dataset900_Tiny", SEEDS)


def options(phantoms, out, **kw) -> TrainOptions:
    kw.setdefault("recipe", "tiny")
    kw.setdefault("val_fraction", 0.34)
    kw.setdefault("device", "cpu")
    return TrainOptions(dataset=phantoms, output=out, **kw)


@pytest.fixture(scope="module")
def trained(phantoms, tmp_path_factory):
    return train(options(phantoms, tmp_path_factory.mktemp("bundles") / "tiny-model", seed=3))


def test_a_tiny_run_writes_a_complete_bundle_that_the_predictor_runs(trained, phantoms):
    from PancreasSegLib.phantoms.generator import make_phantom
    from PancreasSegLib.pipeline.predictor import Predictor

    assert sorted(p.name for p in trained.iterdir()) == [
        "MODEL_CARD.md", "localizer.safetensors", "model.json", "segmenter.safetensors", "train.log"]
    image, _ = make_phantom(SEEDS[0], preset="small")
    prediction = Predictor.from_bundle(trained, device="cpu").predict_image(image, allow_empty=True)
    assert prediction.label.GetSize() == image.GetSize()
    assert prediction.label.GetSpacing() == image.GetSpacing()
    assert prediction.label.GetDirection() == image.GetDirection()


def test_model_json_records_the_cases_with_their_hashes_the_split_and_the_seed(trained, phantoms):
    from PancreasSegLib.datasets.nnunet import image_path, label_path
    from PancreasSegLib.model.bundle import sha256_file

    config = json.loads((trained / "model.json").read_text(encoding="utf-8"))
    record = config["training"]
    cases = {c["case_id"]: c for c in record["data"]["cases"]}
    assert sorted(cases) == [f"phantom_{s:05d}" for s in SEEDS]
    for case_id, entry in cases.items():
        assert entry["image_sha256"] == sha256_file(image_path(phantoms, case_id))
        assert entry["label_sha256"] == sha256_file(label_path(phantoms, case_id))
    split = record["split"]
    assert len(split["validation"]) == 1 and not set(split["train"]) & set(split["validation"])
    assert record["seed"] == 3 and record["parent"] is None
    assert record["stages"]["segmenter"]["iterations"] == 2 and record["stages"]["localizer"]["iterations"] == 2
    assert "dice" in config["metrics"]["validation_segmenter"]
    assert "roi_recall" in config["metrics"]["validation_localizer"]
    assert config["stages"]["segmenter"]["weights"]["dtype"] == "float16"


def test_the_bundle_holds_no_checkpoint_or_pickle(trained):
    assert not [p for p in trained.rglob("*") if p.suffix in (".pt", ".pth", ".pkl", ".npz")]
    assert (work_folder_for(trained) / "checkpoints" / "segmenter" / "optimizer.pt").is_file()


def test_an_interrupted_run_continues_from_its_checkpoint(phantoms, tmp_path):
    out = tmp_path / "resumed"
    first = options(phantoms, out, stage="segmenter", epochs=2, stop_after=1)  # 2 epochs of 2 iterations
    with pytest.raises(Interrupted):
        train(first)
    state = json.loads((work_folder_for(out) / "checkpoints" / "segmenter" / "state.json").read_text(encoding="utf-8"))
    assert state["iteration"] == 1 and not state["done"]
    assert not out.exists()  # no bundle until training is complete
    train(options(phantoms, out, stage="segmenter", epochs=2))
    record = json.loads((out / "model.json").read_text(encoding="utf-8"))["training"]
    assert record["stages"]["segmenter"]["iterations"] == 4
    assert [h["iteration"] for h in record["stages"]["segmenter"]["history"]] == [2, 4]
    assert "segmenter: resuming at iteration 1" in (out / "train.log").read_text(encoding="utf-8")


def test_a_different_run_into_the_same_work_folder_is_refused(phantoms, tmp_path):
    out = tmp_path / "model"
    with pytest.raises(Interrupted):
        train(options(phantoms, out, stage="segmenter", stop_after=1))
    with pytest.raises(InputError, match="different training run.*seed"):
        train(options(phantoms, out, stage="segmenter", seed=5))


def test_fine_tuning_from_a_bundle_records_its_parent(trained, phantoms, tmp_path):
    from PancreasSegLib.model.bundle import Bundle

    parent = Bundle.load(trained)
    out = train(options(phantoms, tmp_path / "tuned", stage="segmenter", init=trained))
    config = json.loads((out / "model.json").read_text(encoding="utf-8"))
    assert config["training"]["parent"] == {"name": "tiny-model", "version": "1.0.0",
                                           "sha256": parent.provenance()["sha256"]}
    assert config["training"]["stages_not_trained"] == {"localizer": "copied from the parent bundle"}
    tuned = Bundle.load(out)
    same = tuned.localizer.state_dict()
    # The localizer is the parent's (up to fp16 storage), the segmenter has moved on.
    assert all(torch.allclose(same[k].float(), v.float(), atol=1e-3) for k, v in parent.localizer.state_dict().items())
    seg_parent, seg_tuned = parent.segmenter.state_dict(), tuned.segmenter.state_dict()
    assert any(not torch.equal(seg_parent[k], seg_tuned[k]) for k in seg_parent if seg_parent[k].is_floating_point())
    assert "Fine-tuned from `tiny-model`" in (out / "MODEL_CARD.md").read_text(encoding="utf-8")


def test_a_fine_tuned_bundle_says_its_unsure_ranges_are_its_parents(trained, phantoms, tmp_path):
    import shutil

    from PancreasSegLib.evaluation.calibration import store_calibration
    from PancreasSegLib.pipeline.quality import quality_record

    parent = tmp_path / "calibrated"
    shutil.copytree(trained, parent)
    config = json.loads((parent / "model.json").read_text(encoding="utf-8"))
    config["quality"] = {"format": "pancreasseg-quality/1", "ranges": {"volume_ml": [20.0, 90.0]}}
    (parent / "model.json").write_text(json.dumps(config), encoding="utf-8")
    out = train(options(phantoms, tmp_path / "tuned", stage="segmenter", init=parent))
    quality = json.loads((out / "model.json").read_text(encoding="utf-8"))["quality"]
    assert quality["ranges"] == {"volume_ml": [20.0, 90.0]} and quality["inherited_from"]["name"] == "tiny-model"
    assert "not measured on this model" in (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert quality_record({}, [], quality)["calibration_inherited_from"]["name"] == "tiny-model"
    # calibrating the fine-tuned model replaces the inherited ranges
    store_calibration(out, {"format": "pancreasseg-quality/1", "ranges": {"volume_ml": [5.0, 9.0]}}, "val")
    assert "inherited_from" not in json.loads((out / "model.json").read_text(encoding="utf-8"))["quality"]


def test_fine_tuning_at_a_new_segmenter_spacing_keeps_the_window_field_of_view(trained, phantoms, tmp_path):
    from PancreasSegLib.model.bundle import Bundle
    from PancreasSegLib.pipeline.predictor import Predictor

    parent = json.loads((trained / "model.json").read_text(encoding="utf-8"))["stages"]["segmenter"]
    spacing = parent["spacing_xyz_mm"][0] * 0.75
    out = train(options(phantoms, tmp_path / "finer", stage="segmenter", init=trained, segmenter_spacing=spacing))
    stage = json.loads((out / "model.json").read_text(encoding="utf-8"))["stages"]["segmenter"]
    assert stage["spacing_xyz_mm"] == [spacing] * 3
    div = stage.get("size_divisor", 16)
    for new, old, old_mm in zip(stage["patch_size_zyx"], parent["patch_size_zyx"], parent["spacing_xyz_mm"][::-1]):
        assert new % div == 0 and old * old_mm <= new * spacing < old * old_mm + div * spacing
    # The same network, now reading the crop at the finer spacing.
    assert set(Bundle.load(out).segmenter.state_dict()) == set(Bundle.load(trained).segmenter.state_dict())
    image = sitk.ReadImage(str(next((phantoms / "imagesTr").iterdir())))
    prediction = Predictor.from_bundle(out, device="cpu").predict_image(image, allow_empty=True)
    assert prediction.label.GetSize() == image.GetSize()


def test_a_dataset_with_a_missing_label_exits_2_before_any_training(phantoms, tmp_path, capsys):
    import shutil

    broken = tmp_path / "Dataset901_Broken"
    shutil.copytree(phantoms, broken)
    (broken / "labelsTr" / "phantom_00901.nii.gz").unlink()
    out = tmp_path / "never"
    assert main(["train", str(broken), "-o", str(out), "--recipe", "tiny", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "phantom_00901" in err and "Traceback" not in err
    assert not out.exists() and not work_folder_for(out).exists()


@pytest.mark.parametrize("spacing", ["0", "-1", "20"])
def test_an_impossible_segmenter_spacing_exits_2_before_any_training(phantoms, tmp_path, capsys, spacing):
    out = tmp_path / "never"
    assert main(["train", str(phantoms), "-o", str(out), "--recipe", "tiny", "--segmenter-spacing", spacing]) == 2
    assert "--segmenter-spacing must be between" in capsys.readouterr().err
    assert not out.exists() and not work_folder_for(out).exists()


def test_split_is_seeded_case_level_and_keeps_a_training_case():
    ids = [f"c{i}" for i in range(10)]
    train_a, val_a = split_cases(ids, 1, 0.2)
    assert split_cases(ids, 1, 0.2) == (train_a, val_a)
    assert len(val_a) == 2 and sorted(train_a + val_a) == ids
    assert split_cases(ids, 2, 0.2)[1] != val_a or split_cases(ids, 3, 0.2)[1] != val_a
    assert split_cases(["only"], 0, 0.5) == (["only"], [])
    assert split_cases(ids, 0, 0.0) == (ids, [])


def test_the_learning_rate_warms_up_then_decays_to_zero_with_the_budget():
    assert learning_rate(1.0, 0, 0.0, 4) == pytest.approx(0.25)
    assert learning_rate(1.0, 10, 0.5, 4) == pytest.approx(0.5**0.9)
    assert learning_rate(1.0, 10, 1.0, 4) == 0.0
    budget = Budget(iterations=100, seconds=10.0)
    assert budget.fraction(LoopState(iteration=20, seconds=5.0)) == pytest.approx(0.5)
    assert budget.exhausted(LoopState(iteration=100, seconds=1.0))


def test_the_segmenter_crop_holds_the_whole_label_with_a_margin():
    from PancreasSegLib.model.configs import recipe_config, training_settings
    from PancreasSegLib.phantoms.generator import make_phantom
    from PancreasSegLib.training.caches import label_lps_bounds, localizer_arrays, segmenter_arrays

    image, label = make_phantom(SEEDS[1], preset="small")
    config = recipe_config("tiny")
    seg = segmenter_arrays(image, label, config["stages"]["segmenter"], training_settings(config, "segmenter"),
                           np.random.default_rng(0), num_labels=1)
    assert set(np.unique(seg["label"])) == {0, 1}
    # No label on the crop's faces: the margin (20 mm, jittered by -10..+15 mm) surrounds the gland.
    faces = [seg["label"][0], seg["label"][-1], seg["label"][:, 0], seg["label"][:, -1], seg["label"][..., 0],
             seg["label"][..., -1]]
    assert not any(f.any() for f in faces)
    assert 0.0 <= seg["image"].min() and seg["image"].max() <= 1.0
    loc = localizer_arrays(image, label, config["stages"]["localizer"], training_settings(config, "localizer"),
                           np.random.default_rng(0))
    with_pancreas = loc["masks"].reshape(len(loc["masks"]), -1).any(axis=1)
    assert with_pancreas.any() and not with_pancreas.all()  # positives and negatives
    assert label_lps_bounds(label) is not None


@pytest.mark.slow
def test_ctrl_c_on_the_command_line_checkpoints_and_the_same_command_finishes(phantoms, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "cli-model"
    command = [sys.executable, "-m", "PancreasSegLib", "train", str(phantoms), "-o", str(out), "--stage", "segmenter",
               "--recipe", "tiny", "--epochs", "400", "--device", "cpu", "--threads", "1", "--progress", "none"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    state = work_folder_for(out) / "checkpoints" / "segmenter" / "state.json"
    deadline = time.monotonic() + 240
    while not state.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err
    assert "run the same command again to continue" in err
    stopped_at = json.loads(state.read_text(encoding="utf-8"))["iteration"]
    assert 0 < stopped_at < 800 and not out.exists()
    # Continued with a budget that is already used up, it writes the bundle at once, counting on from the checkpoint.
    short = command[:command.index("--epochs") + 1] + ["1"] + command[command.index("--epochs") + 2:]
    finish = subprocess.run(short, env=env, capture_output=True, text=True, timeout=240)
    assert finish.returncode == 0, finish.stderr
    record = json.loads((out / "model.json").read_text(encoding="utf-8"))["training"]
    assert record["stages"]["segmenter"]["iterations"] == stopped_at
    assert f"segmenter: resuming at iteration {stopped_at}" in (out / "train.log").read_text(encoding="utf-8")


def test_a_finished_stage_continues_when_the_budget_grows(phantoms, tmp_path):
    out = tmp_path / "longer"
    train(options(phantoms, out, stage="segmenter", epochs=1))
    train(options(phantoms, out, stage="segmenter", epochs=2))
    record = json.loads((out / "model.json").read_text(encoding="utf-8"))["training"]
    assert record["stages"]["segmenter"]["iterations"] == 4
    assert "segmenter: resuming at iteration 2" in (out / "train.log").read_text(encoding="utf-8")


def test_fine_tuning_on_an_exported_curated_set_records_its_cases_and_segments(trained, tmp_path):
    """The improvement loop: reviewed cases exported with provenance, then a fine-tuned bundle that runs."""
    import SimpleITK as sitk

    from PancreasSegLib.curation import export_case
    from PancreasSegLib.phantoms.generator import make_phantom
    from PancreasSegLib.pipeline.predictor import Predictor

    curated = tmp_path / "Dataset501_Curated"
    for seed in SEEDS:
        image, label = make_phantom(seed, preset="small")
        proposal = sitk.BinaryErode(label > 0, [1, 1, 1])  # a proposal the reviewer had to widen
        export_case(image, label, curated, proposal=sitk.Cast(proposal, sitk.sitkUInt8), reviewer="dr-a",
                    model=trained)
    out = tmp_path / "curated-v2"
    assert main(["train", str(curated), "-o", str(out), "--init", str(trained), "--recipe", "tiny",
                 "--epochs", "1", "--device", "cpu", "--val-fraction", "0.34", "--progress", "none"]) == 0
    config = json.loads((out / "model.json").read_text(encoding="utf-8"))
    assert config["training"]["parent"]["name"] == "tiny-model"
    recorded = {c["case_id"]: c for c in config["training"]["data"]["cases"]}
    assert sorted(recorded) == ["case_0001", "case_0002", "case_0003"]
    for case_id, entry in recorded.items():
        label_file = curated / "labelsTr" / f"{case_id}.nii.gz"
        assert entry["label_sha256"] == hashlib.sha256(label_file.read_bytes()).hexdigest()
        assert (curated / "provenance" / f"{case_id}.json").is_file()
    image, _ = make_phantom(SEEDS[1], preset="small")
    prediction = Predictor.from_bundle(out, device="cpu").predict_image(image, allow_empty=True)
    assert prediction.label.GetSize() == image.GetSize()
