"""The precision choice on a CPU (homework.runtime.precision and resolve_placement), on any processor: the
capability and the probe are simulated, so a machine without AMX tests the bf16 branch and one with it tests
the fp32 branch."""

import json

import pytest
import torch

from homework.runtime import device as device_module
from homework.runtime import precision
from homework.runtime.device import Placement, check_precision, resolve_placement
from homework.runtime.errors import HomeworkError

AMX_CPU = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n"
           "flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n") * 2
AVX2_CPU = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx2 fma\n"


def identity(cpuinfo=AMX_CPU):
    return precision.cpu_identity(cpuinfo)


def test_the_identity_reads_the_model_and_only_the_native_bf16_flags():
    amx, avx2 = identity(AMX_CPU), identity(AVX2_CPU)
    assert (amx.model, amx.native_bf16) == ("Intel(R) Xeon(R) Processor", ("amx_bf16", "avx512_bf16"))
    assert (avx2.model, avx2.native_bf16) == ("AMD EPYC 7B13", ())
    assert amx.torch == torch.__version__ and amx.threads == torch.get_num_threads()
    assert amx.key != avx2.key and amx.key == identity(AMX_CPU).key


class Probes:
    """A stand-in probe that counts its calls."""

    def __init__(self, fp32_s=0.010, bf16_s=0.002):
        self.result, self.calls = precision.Probe(fp32_s, bf16_s), 0

    def __call__(self):
        self.calls += 1
        return self.result


@pytest.mark.parametrize("asked,cpu,probe,dtype,reason,probed", [
    ("auto", AMX_CPU, (0.010, 0.002), torch.bfloat16, "bf16 mixed precision: amx_bf16+avx512_bf16, a matmul measured "
                                                      "5.0x faster", 1),
    ("auto", AMX_CPU, (0.010, 0.009), torch.float32, "present but bf16 measured only 1.11x", 1),
    ("auto", AVX2_CPU, (0.010, 1.0), torch.float32, "AMD EPYC 7B13 has no native bf16", 0),
    ("fp32", AMX_CPU, (0.010, 0.002), torch.float32, "fp32 as asked", 0),
    ("bf16", AMX_CPU, (0.010, 0.011), torch.bfloat16, "bf16 mixed precision as asked", 1),
])
def test_the_cpu_choice(asked, cpu, probe, dtype, reason, probed):
    probes = Probes(*probe)
    choice = precision.choose_cpu_precision(asked, identity(cpu), probes)
    assert choice.dtype == dtype and reason in choice.reason
    assert probes.calls == probed  # no probe where the flags or the request already decide


def test_the_threshold_is_inclusive_and_not_a_tie():
    at = Probes(0.012, 0.010)  # exactly MIN_SPEEDUP
    assert precision.choose_cpu_precision("auto", identity(), at).dtype == torch.bfloat16
    below = Probes(0.0119, 0.010)
    assert precision.choose_cpu_precision("auto", identity(), below).dtype == torch.float32


def test_bf16_is_refused_on_a_cpu_that_emulates_it_with_the_measured_ratio():
    with pytest.raises(HomeworkError) as info:
        precision.choose_cpu_precision("bf16", identity(AVX2_CPU), Probes(0.010, 4.0))
    message = str(info.value)
    assert "AMD EPYC 7B13 has neither amx_bf16 nor avx512_bf16" in message and "400x slower" in message
    assert "failure catalog row 9" in message and "--precision fp32" in message


@pytest.mark.parametrize("env,arg,expected", [(None, None, "auto"), ("BF16", None, "bf16"), ("bf16", "fp32", "fp32"),
                                              (" fp32 ", None, "fp32")])
def test_the_request_is_the_argument_then_the_environment_then_auto(monkeypatch, env, arg, expected):
    if env is None:
        monkeypatch.delenv(precision.PRECISION_ENV, raising=False)
    else:
        monkeypatch.setenv(precision.PRECISION_ENV, env)
    assert precision.requested_precision(arg) == expected


@pytest.mark.parametrize("bad,words", [("fp16", "precision 'fp16' refused"), ("half", "unknown precision 'half'")])
def test_fp16_and_unknown_precisions_are_refused_naming_the_accepted_ones(bad, words):
    with pytest.raises(HomeworkError, match=words) as info:
        precision.requested_precision(bad)
    assert "auto, fp32, bf16" in str(info.value)


def test_the_probe_is_cached_per_machine_and_measured_again_on_another_cpu(tmp_path):
    probes = Probes(0.010, 0.002)
    first = precision.cached_probe(tmp_path, identity(AMX_CPU), probes)
    again = precision.cached_probe(tmp_path, identity(AMX_CPU), probes)
    assert first == again == probes.result and probes.calls == 1
    recorded = json.loads((tmp_path / precision.PROBE_FILE).read_text())
    assert recorded[identity().key]["cpu"]["model"] == "Intel(R) Xeon(R) Processor"
    other = precision.CpuIdentity("Intel(R) Xeon(R) Processor", ("amx_bf16",), "9.9", 64)  # a new torch, more threads
    assert precision.cached_probe(tmp_path, other, Probes(0.5, 0.5)).speedup == 1.0
    assert precision.cached_probe(tmp_path, identity(AVX2_CPU), Probes(0.01, 1.0)).bf16_s == 1.0
    assert len(json.loads((tmp_path / precision.PROBE_FILE).read_text())) == 3  # one entry per machine
    assert precision.cached_probe(tmp_path, identity(AMX_CPU), Probes(9, 9)) == probes.result  # still the first


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"KEY": {"fp32_s": 1}}'])
def test_a_damaged_cache_is_measured_again_and_rewritten(tmp_path, content):
    (tmp_path / precision.PROBE_FILE).write_text(content.replace("KEY", identity().key))
    probes = Probes()
    assert precision.cached_probe(tmp_path, identity(), probes) == probes.result and probes.calls == 1
    assert identity().key in json.loads((tmp_path / precision.PROBE_FILE).read_text())


def test_no_cache_directory_measures_each_time(tmp_path):
    probes = Probes()
    precision.cached_probe(None, identity(), probes)
    precision.cached_probe(None, identity(), probes)
    assert probes.calls == 2


def test_the_real_probe_is_short_and_times_both_precisions():
    import time

    start = time.perf_counter()
    probe = precision.measure()
    assert time.perf_counter() - start < 5  # a guard against a probe that runs away, not a speed target
    assert probe.fp32_s > 0 and probe.bf16_s > 0 and probe.speedup == probe.fp32_s / probe.bf16_s


@pytest.fixture
def simulated_cpu(monkeypatch, tmp_path):
    """resolve_placement on a CPU of our choosing, its probe cached under tmp_path."""
    monkeypatch.setenv("HOMEWORK_CACHE", str(tmp_path))
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)

    def use(cpuinfo, probe=(0.010, 0.002)):
        monkeypatch.setattr(precision, "_cpuinfo", lambda: cpuinfo)
        monkeypatch.setattr(precision, "measure", lambda *a, **k: precision.Probe(*probe))

    return use


def test_resolve_placement_on_a_cpu_with_native_bf16_that_measures_it_faster(simulated_cpu, tmp_path):
    simulated_cpu(AMX_CPU)
    placement = resolve_placement("cpu", training=True)
    assert placement == Placement(torch.device("cpu"), torch.bfloat16) and placement.bf16
    assert placement.explain().startswith("cpu/bfloat16 (bf16 mixed precision: amx_bf16+avx512_bf16")
    assert (tmp_path / precision.PROBE_FILE).is_file()  # in the model cache, for the next run
    assert resolve_placement("cpu", "fp32", training=True).dtype == torch.float32
    # generation (the grader, load(), evaluation after training) stays fp32 unless bf16 is asked for
    generation = resolve_placement("cpu")
    assert generation.dtype == torch.float32 and "generation" in generation.reason
    assert placement.for_generation() == generation
    asked = resolve_placement("cpu", "bf16")
    assert asked.dtype == torch.bfloat16 and asked.for_generation() is asked
    check_precision(torch.device("cpu"), torch.bfloat16)  # allowed here


def test_resolve_placement_on_a_cpu_without_it_stays_fp32_and_refuses_bf16(simulated_cpu, monkeypatch):
    simulated_cpu(AVX2_CPU, probe=(0.010, 4.0))
    assert resolve_placement("cpu", training=True).dtype == torch.float32
    monkeypatch.setenv(precision.PRECISION_ENV, "bf16")
    with pytest.raises(HomeworkError, match="400x slower"):
        resolve_placement("cpu", training=True)
    with pytest.raises(HomeworkError, match="row 9"):
        check_precision(torch.device("cpu"), torch.bfloat16)
    assert device_module.wrong_half_precision(torch.device("cpu")) == torch.bfloat16


def test_the_wrong_half_precision_on_a_cpu_with_native_bf16_is_fp16(simulated_cpu):
    simulated_cpu(AMX_CPU)
    assert device_module.wrong_half_precision(torch.device("cpu")) == torch.float16
    with pytest.raises(HomeworkError, match="fp16"):
        check_precision(torch.device("cpu"), torch.float16)
