"""The metric registry and the tables built from it: the paper's columns exactly, a registered
metric's column, the registry's refusals."""
import pytest

from fsr_jax import metrics, tables
from fsr_jax.metrics import registry

RESULTS = {"step": 2, "niqe_block_size": 32, "sets": {
    "celeba": {"kind": "paired", "n": 4, "methods": {
        "bicubic": {"fid": 123.456, "fid_n": 4, "fid_n_ref": 4, "psnr": 24.1234, "ssim": 0.712345, "lpips": 0.23456},
        "tnet": {"fid": 98.7, "fid_n": 4, "fid_n_ref": 4, "psnr": 25.5, "ssim": 0.75, "lpips": 0.2}}},
    "widerface": {"kind": "real", "n": 4, "methods": {
        "bicubic": {"fid": 200.0, "fid_n": 4, "fid_n_ref": 8, "niqe": 7.123456},
        "tnet": {"fid": 150.0, "fid_n": 4, "fid_n_ref": 8, "niqe": 6.5}}}}}

# What the tables were before the registry (written by the column tables it replaced).
RESULTS_TABLE = """# W, checkpoint 2

## Paired test sets (as Table 1; FID against the set's HR)

celeba: 4 faces.

| Method | celeba FID↓ | celeba LPIPS↓ | celeba PSNR↑ | celeba SSIM↑ |
|---|---|---|---|---|
| Bicubic | 123.46 (N=4, ref=4) | 0.235 | 24.12 | 0.7123 |
| TNet | 98.70 (N=4, ref=4) | 0.200 | 25.50 | 0.7500 |

## Real-LR test sets (as Table 2; FID against the HR training set)

widerface: 4 faces.

| Method | widerface FID↓ | widerface NIQE↓ (block 32) |
|---|---|---|
| Bicubic | 200.00 (N=4, ref=8) | 7.1235 |
| TNet | 150.00 (N=4, ref=8) | 6.5000 |

FID cells: value (N=evaluated faces, ref=reference faces).
"""
ABLATION_TABLE = """\
| Model | celeba FID↓ | celeba LPIPS↓ | celeba PSNR↑ | celeba SSIM↑ | widerface FID↓ | widerface NIQE↓ (block 32) | Run |
|---|---|---|---|---|---|---|---|
| baseline | 123.46 (N=4, ref=4) | 0.235 | 24.12 | 0.7123 | 200.00 (N=4, ref=8) | 7.1235 | runs/b (bicubic, step 2) |
| Ours-TNet | 98.70 (N=4, ref=4) | 0.200 | 25.50 | 0.7500 | 150.00 (N=4, ref=8) | 6.5000 | runs/full (tnet, step 2) |

FID cells: value (N=evaluated faces, ref=reference faces).
"""


def ablation_rows(results):
    return [("Ours-TNet", {"net": "tnet", "workdir": "runs/full", "metrics": results}),
            ("baseline", {"net": "bicubic", "workdir": "runs/b", "metrics": results})]


def test_the_registry_holds_the_papers_metrics_and_the_tables_are_the_papers():
    assert list(metrics.REGISTRY) == ["fid", "psnr", "ssim", "lpips", "niqe"]
    assert [m.header for m in registry.columns("paired")] == ["FID↓", "LPIPS↓", "PSNR↑", "SSIM↑"]
    assert [m.header for m in registry.columns("real")] == ["FID↓", "NIQE↓"]
    assert registry.settings() == {"niqe_block_size": metrics.NIQE_BLOCK_SIZE}
    assert tables.results_table(RESULTS, "W, checkpoint 2") == RESULTS_TABLE
    assert tables.ablation_table(ablation_rows(RESULTS), "celeba", "widerface") == ABLATION_TABLE


def toy_metrics():
    """Two toy metrics: a higher-is-better paired one and a set-level one on both kinds."""
    return [metrics.Metric("sharp", lambda x, y: x.mean(axis=(1, 2, 3)), higher_is_better=True, digits=1,
                           needs=registry.PAIR, kinds=("paired",)),
            metrics.Metric("spread", lambda f, r: 0.0, higher_is_better=False, digits=3, needs=registry.FEATURES,
                           kinds=registry.KINDS, label="Spread", note=lambda results: f"step {results.get('step')}")]


def test_a_registered_metric_gets_its_column_arrow_digits_and_note_until_removed():
    results = {**RESULTS, "sets": {name: {**s, "methods": {m: {**v, "sharp": 0.4567, "spread": 1.23456}
                                                          for m, v in s["methods"].items()}}
                                   for name, s in RESULTS["sets"].items()}}
    added = [metrics.register(metric) for metric in toy_metrics()]
    try:
        table = tables.results_table(results, "W")
        ablation = tables.ablation_table(ablation_rows(results), "celeba", "widerface")
    finally:
        for metric in added:
            metrics.unregister(metric.name)
    header = next(line for line in table.splitlines() if line.startswith("| Method | celeba"))
    assert header == ("| Method | celeba FID↓ | celeba LPIPS↓ | celeba Spread↓ (step 2) | celeba PSNR↑ | "
                      "celeba SSIM↑ | celeba SHARP↑ |")
    assert "| TNet | 98.70 (N=4, ref=4) | 0.200 | 1.235 | 25.50 | 0.7500 | 0.5 |" in table
    assert "| widerface FID↓ | widerface NIQE↓ (block 32) | widerface Spread↓ (step 2) |" in table
    assert "SHARP" not in table.split("## Real-LR")[1]
    assert "celeba SHARP↑ | widerface FID↓" in ablation and "| 0.5 | 200.00 (N=4, ref=8) |" in ablation
    assert list(metrics.REGISTRY) == ["fid", "psnr", "ssim", "lpips", "niqe"]
    assert tables.results_table(results, "W, checkpoint 2") == RESULTS_TABLE  # their scores unshown


def test_the_registry_refuses_a_taken_name_and_inconsistent_needs():
    with pytest.raises(ValueError, match="'psnr' is already registered"):
        metrics.register(metrics.Metric("psnr", metrics.psnr, True, 2, registry.PAIR, ("paired",)))
    with pytest.raises(ValueError, match="a PAIR metric needs HR"):
        metrics.Metric("toy", metrics.psnr, True, 2, registry.PAIR, ("real",))
    with pytest.raises(ValueError, match="needs must be one of"):
        metrics.Metric("toy", metrics.psnr, True, 2, "hr", ("paired",))
    with pytest.raises(ValueError, match="kinds must be some of"):
        metrics.Metric("toy", metrics.niqe, False, 2, registry.IMAGE, ("synthetic",))
    with pytest.raises(KeyError, match="no metric named 'toy'"):
        metrics.unregister("toy")
    assert list(metrics.REGISTRY) == ["fid", "psnr", "ssim", "lpips", "niqe"]
