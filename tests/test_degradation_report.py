"""The DeNet report: statistics of the three LR sets, flaws, the Frechet reference and the sheet."""
import numpy as np
import pytest

from fsr_jax import degradation_report
from fsr_jax.data import images
from fsr_jax.metrics import lr_stats


def pixel_features(faces):
    """A stand-in for Inception: each face's pixels as its feature vector."""
    return np.asarray(faces, np.float64).reshape(len(faces), -1) / 255.0


@pytest.fixture(scope="module")
def faces(load_faces):
    return load_faces("test/celeba/HR", 12), load_faces("test/widerface/LR", 40)


def test_a_denet_equal_to_bicubic_has_bicubics_statistics_and_no_flaw(faces):
    hr, real = faces
    bicubic = np.stack([images.resize_bicubic(x, 16) for x in hr])
    result = degradation_report.report(hr, real, bicubic / 255.0)
    rows = result["rows"]
    assert list(rows) == ["bicubic", "denet", "real"]
    for key in ("mean_rgb", "std_rgb", "laplacian_variance", "noise_sigma", "realism_gap"):
        assert rows["denet"][key] == pytest.approx(rows["bicubic"][key])
    assert rows["real"] == {**lr_stats.set_statistics(real), "realism_gap": 0.0}
    assert result["flaws"] == [] and "frechet_reference" not in result


def test_a_speckled_out_of_range_denet_is_flagged_and_its_values_counted(faces):
    hr, real = faces
    bicubic = np.stack([images.resize_bicubic(x, 16) for x in hr]) / 255.0
    speckled = bicubic + np.random.default_rng(0).normal(0, 0.08, bicubic.shape)
    result = degradation_report.report(hr, real, speckled)
    assert {"speckle", "out of range"} <= set(result["flaws"])
    assert result["rows"]["denet"]["outside_share"] == pytest.approx(np.mean((speckled < 0) | (speckled > 1)))
    assert result["rows"]["denet"]["realism_gap"] > result["rows"]["bicubic"]["realism_gap"]


def test_frechet_distances_share_a_reference_of_real_faces_past_the_first_n(faces):
    hr, real = faces
    bicubic = np.stack([images.resize_bicubic(x, 16) for x in hr])
    result = degradation_report.report(hr, real, bicubic / 255.0, pixel_features)
    rows = result["rows"]
    assert [rows[n]["frechet"]["n"] for n in ("bicubic", "denet", "real")] == [12, 12, 12]
    assert {rows[n]["frechet"]["n_ref"] for n in ("bicubic", "denet", "real")} == {28}
    assert rows["denet"]["frechet"]["value"] == pytest.approx(rows["bicubic"]["frechet"]["value"], rel=1e-4)
    assert "faces 13-40" in result["frechet_reference"]
    # Too few real faces for a floor: all of them are the reference, and no real row.
    few = degradation_report.report(hr, real[:20], bicubic / 255.0, pixel_features)
    assert "frechet" not in few["rows"]["real"] and few["rows"]["denet"]["frechet"]["n_ref"] == 20
    table = degradation_report.markdown(result, "celeba", "widerface")
    assert "| DeNet(HR) | 12 |" in table and "(N=12, ref=28)" in table and "DeNet against bicubic: no flaw" in table


def test_the_contact_sheet_has_titled_columns_hr_bicubic_denet_real(faces):
    hr, real = faces
    denet = np.full((len(hr), 16, 16, 3), 0.5, np.float32)
    sheet = degradation_report.contact_sheet(hr, denet, real, count=3)
    band = sheet.shape[0] - 3 * 64
    assert sheet.shape[1] == 4 * 64 and 10 <= band <= 20
    np.testing.assert_array_equal(sheet[band:band + 64, :64], hr[0])
    np.testing.assert_array_equal(sheet[band:band + 64, 128:192], np.full((64, 64, 3), 128, np.uint8))
    np.testing.assert_array_equal(sheet[band + 64:band + 128, 192:][::4, ::4], real[1])
    title = sheet[:band]
    assert (title < 128).any() and (title == 255).mean() > 0.5   # dark text on white
