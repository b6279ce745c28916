"""The throughput benchmark prints and writes its figures (a tiny run; real figures come from
`python -m homework.tools.bench`, never from a timed test)."""

import json

import pytest

from homework.tools.bench import GAINS, VARIANTS, CountingCollator, PeakRSS, main
from homework.training.collate import DynamicPaddingCollator
from homework.training.config import TrainConfig


def test_counting_collator_counts_real_tokens():
    counter = CountingCollator(DynamicPaddingCollator(2))
    counter([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [5], "labels": [5]}])
    assert counter.tokens == [4]


def test_counting_collator_counts_every_packed_position():
    from homework.training.packing import PackingCollator

    counter = CountingCollator(PackingCollator(refuse_unsupervised=False))
    counter([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [5], "labels": [5]}])
    assert counter.tokens == [4]  # no padding: every position of the packed row is a real token


def test_peak_rss_sees_an_allocation():
    with PeakRSS() as rss:
        block = bytearray(64 * 2**20)
        block[::4096] = b"x" * len(block[::4096])
    assert rss.peak >= 64 * 2**20


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bench_writes_speedup_json(tmp_path, capsys):
    from homework.runtime.device import resolve_placement

    out = tmp_path / "bench.json"
    assert main(["--steps", "1", "--batch-size", "2", "--json", str(out)]) == 0
    from homework.runtime.precision import cpu_identity

    data = json.loads(out.read_text())
    native = bool(cpu_identity().native_bf16)
    assert tuple(data["results"]) == (VARIANTS if native else VARIANTS[:-1])  # bf16 only where the CPU computes it
    assert data["environment"]["native_bf16"] == list(cpu_identity().native_bf16)
    assert data["speedup"] > 0 and data["environment"]["device"] == resolve_placement(None, "fp32").describe()
    for _, _, key in GAINS:
        assert key not in data if key == "bf16_gain" and not native else data[key] > 0, key
    project = TrainConfig()  # the project variants are train_model's layout, the others one all-layer layout
    for name in ("project", "bf16")[: 1 + native]:
        assert data["results"][name]["lora"]["layers"] == (project.lora_layers or "all")
        assert data["results"][name]["lora"]["rank"] == project.lora_rank
    assert {r["lora"]["layers"] for name, r in data["results"].items() if name not in ("project", "bf16")} == {"all"}
    if native:  # the same first batch and initialisation: bf16 mixed precision starts from the same loss
        assert abs(data["results"]["bf16"]["losses"][0] - data["results"]["project"]["losses"][0]) < 0.05
    for r in data["results"].values():
        assert r["real_tokens_per_s"] > 0 and r["peak_rss_mb"] > 100 and len(r["losses"]) == 2
        assert r["page_faults_per_step"] >= 0
    # seed, dynamic, head and packed draw the same first batch (the others draw length-grouped ones) from the
    # same adapter initialisation: padding to 128, the supervised-only head and packing change no loss
    first = [r["losses"][0] for name, r in data["results"].items() if name in ("seed", "dynamic", "head", "packed")]
    assert max(first) - min(first) < 1e-3
    printed = capsys.readouterr().out
    assert "speedup (project / seed, real tokens/s)" in printed and "lora layout gain" in printed


def test_bench_refuses_an_unknown_variant():
    with pytest.raises(SystemExit):
        main(["--variants", "seed,turbo"])
