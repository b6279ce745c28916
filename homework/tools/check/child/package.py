"""Their package as the checks read it: its imports, the object inference runs on (what their load()
returns), and the training rows (their Trainer's, else TokenizedDataset's)."""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

from . import shared, training
from .shared import CHECK_BATCH, STUBBED, CheckTimeout, Finding, _allowed, _note, crash_finding, short


def _imports(node, at_import: bool, guarded: bool):
    """(module, line, runs at import, guarded by a try) of every import under `node`."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import):
            yield from ((a.name, child.lineno, at_import, guarded) for a in child.names)
        elif isinstance(child, ast.ImportFrom) and not child.level and child.module:
            yield child.module, child.lineno, at_import, guarded
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _imports(child, False, guarded)
        elif isinstance(child, ast.Try) and child.handlers:
            for part in child.body:
                yield from _imports(ast.Module(body=[part], type_ignores=[]), at_import, True)
            for part in [*child.handlers, *child.orelse, *child.finalbody]:
                yield from _imports(part, at_import, guarded)
        else:
            yield from _imports(child, at_import, guarded)


def count_imports() -> list[tuple[str, str, bool]]:
    """(module, file:line, runs at import) of every import in their package of a module outside the standard
    library, the course's requirements and their own package; imports inside a try are left out."""
    found = []
    for path in sorted((shared.ROOT / "homework").rglob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except SyntaxError as exc:
            raise Finding("violation", f"syntax error: {exc.msg}", 22, f"{short(str(path))}:{exc.lineno}") from None
        for name, line, at_import, guarded in _imports(tree, True, False):
            top = name.split(".")[0]
            if guarded or top in sys.stdlib_module_names or _allowed(name) or top == "homework":
                continue
            if (shared.ROOT / "homework" / f"{top}.py").exists():
                continue  # an absolute import of a sibling module (their package run as a script)
            found.append((name, f"{short(str(path))}:{line}", at_import))
    return found


COURSE_MODULES = ("homework", "homework.base_llm", "homework.data", "homework.sft")


def import_theirs(ctx) -> Finding | None:
    """Import their package into ctx. A module missing here is stubbed (at most 5) so that the other checks
    still run on the rest of their code; it is the finding unless the course's requirements install it (then
    it is missing only here). A misspelt module is not stubbed."""
    import importlib

    first = None
    for _ in range(6):
        try:
            for name in COURSE_MODULES:
                ctx[name] = importlib.import_module(name)
            return first
        except BaseException as exc:  # their import failing is the finding
            if isinstance(exc, CheckTimeout):
                raise
            finding = crash_finding(exc, f"import {name}")
            missing = getattr(exc, "name", None) or ""  # google.colab where google exists, not all of google
            if (not isinstance(exc, ModuleNotFoundError) or not missing or missing.split(".")[0] == "homework"
                    or missing in STUBBED or "misspelling" in finding.cause or len(STUBBED) >= 5):
                for name in COURSE_MODULES:
                    ctx.pop(name, None)
                return first or finding
            if _allowed(missing):
                _note(f"{missing} is not installed here, but the course's requirements install it ({finding.where})")
            else:
                first = first or finding
            STUBBED.add(missing)
            for loaded in [m for m in sys.modules if m == "homework" or m.startswith("homework.")]:
                del sys.modules[loaded]
    return first


def inference_class(ctx):
    """The class whose prompts the grader meets: the BaseLLM subclass their load() builds (a subclass with a
    format_prompt of its own is common), else BaseLLM."""
    import textwrap

    base, sft = ctx["homework.base_llm"].BaseLLM, ctx["homework.sft"]
    load = getattr(sft, "load", None)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(load)))
    except (TypeError, OSError, SyntaxError):
        return base
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            cls = getattr(load, "__globals__", {}).get(name) if name else None
            if isinstance(cls, type) and issubclass(cls, base) and cls is not base:
                return cls
    return base


def dry_load(ctx):
    """What their load() returns before anything is trained (peft's loading of a missing adapter hands back
    the base model): the object the grader calls answer() on, with whatever load() sets on it. None when
    load() needs more than that."""
    from peft import PeftModel

    load = getattr(ctx["homework.sft"], "load", None)
    if load is None:
        return None
    original = PeftModel.__dict__["from_pretrained"]

    def from_pretrained(cls, model, model_id, *args, **kwargs):
        if (Path(str(model_id)) / "adapter_config.json").is_file():
            return original.__func__(cls, model, model_id, *args, **kwargs)
        return model

    PeftModel.from_pretrained = classmethod(from_pretrained)
    try:
        llm = load()
    except BaseException as exc:
        if isinstance(exc, CheckTimeout):
            raise
        return None
    finally:
        PeftModel.from_pretrained = original
    needed = ("tokenizer", "model", "format_prompt", "answer", "batched_generate", "parse_answer")
    return llm if all(hasattr(llm, a) for a in needed) else None


def _llm(ctx):
    if "llm" not in ctx:
        llm = dry_load(ctx)
        if llm is None:
            cls = inference_class(ctx)
            try:
                llm = cls()
            except BaseException as exc:
                if isinstance(exc, CheckTimeout):
                    raise
                raise crash_finding(exc, f"{cls.__name__}()") from None
            how = "BaseLLM()" if cls is ctx["homework.base_llm"].BaseLLM else f"{cls.__name__}(), the class load() builds"
            _note(f"their load() needs a trained adapter: inference checked on {how}")
        ctx["llm"] = llm
        ctx["llm"].model.eval()
        ctx["padding_side"] = ctx["llm"].tokenizer.padding_side
    return ctx["llm"]


def as_built(ctx) -> None:
    """The shared tokenizer's padding side back to what their class set: their tokenize may set it for
    training, which the grader's freshly loaded model never sees."""
    if "llm" in ctx:
        ctx["llm"].tokenizer.padding_side = ctx["padding_side"]


def _train_pairs(ctx) -> list[tuple]:
    if "pairs" not in ctx:
        data = ctx["homework.data"].Dataset("train")
        ctx["dataset"] = data
        ctx["pairs"] = [tuple(data[i]) for i in range(len(data))]
    return ctx["pairs"]


def _ids(x) -> list[int]:
    x = x.tolist() if hasattr(x, "tolist") else list(x)
    if x and isinstance(x[0], list):  # one row of a collated batch
        x = x[0]
    return [int(v) for v in x]


class Row:
    """One training row: its question and correct value, its ids, labels and attention mask (None when it
    has none), and the answer text it should supervise (None when that is not known)."""

    def __init__(self, question, correct, ids, labels, mask, answer):
        self.question, self.correct, self.ids, self.labels, self.mask, self.answer = \
            question, correct, ids, labels, mask, answer

    def unpadded(self) -> tuple[list[int], list[int]]:
        if self.mask is None:
            return self.ids, self.labels
        kept = [k for k, m in enumerate(self.mask) if m]
        return [self.ids[k] for k in kept], [self.labels[k] for k in kept]


def _row(question, correct, item, answer) -> Row:
    mask = _ids(item["attention_mask"]) if "attention_mask" in item else None
    return Row(question, correct, _ids(item["input_ids"]), _ids(item["labels"]), mask, answer)


def course_rows(ctx) -> list[Row]:
    """train.json through their format_example, tokenize and TokenizedDataset (the course interface)."""
    if "course_rows" not in ctx:
        sft, llm = ctx["homework.sft"], _llm(ctx)
        pairs = _train_pairs(ctx)
        try:
            dataset = sft.TokenizedDataset(llm.tokenizer, ctx["dataset"], sft.format_example)
            ctx["course_rows"] = [_row(q, a, dataset[i], str(sft.format_example(q, a)["answer"]))
                                  for i, (q, a) in enumerate(pairs)]
        except BaseException as exc:
            if isinstance(exc, CheckTimeout):
                raise
            ctx["course_rows"] = crash_finding(exc, "tokenizing train.json")
    return ctx["course_rows"]


MAX_TRAINED_ROWS = 2000


def trainer_rows(ctx) -> list[Row] | None:
    """The rows their Trainer trains on: its train_dataset through its data collator, two rows at a time as
    the steps ran; None when train_model built no Trainer with a data set, or its rows are not the data
    file's rows in order (row k holds question k)."""
    if "trainer_rows" in ctx:
        return ctx["trainer_rows"]
    ctx["trainer_rows"] = None
    trainer = next((t for t in reversed(training.SESSION.trainers) if getattr(t, "train_dataset", None) is not None), None)
    if trainer is None:
        return None
    pairs, tok = _train_pairs(ctx), _llm(ctx).tokenizer
    try:
        data, collate = trainer.train_dataset, trainer.data_collator
        n = min(len(data), len(pairs), MAX_TRAINED_ROWS)
        rows = []
        for start in range(0, n, CHECK_BATCH):
            items = [data[k] for k in range(start, min(start + CHECK_BATCH, n))]
            batch = collate(items) if collate is not None else items[0]
            for j in range(len(items)):
                part = {key: batch[key][j] for key in ("input_ids", "labels", "attention_mask") if key in batch}
                q, a = pairs[start + j]
                rows.append(_row(q, a, part, None))
    except Exception:  # rows of a shape the checks do not read (text the collator tokenizes, ...)
        return None
    squeeze = lambda text: "".join(text.split())  # noqa: E731
    if not all(squeeze(r.question) in squeeze(tok.decode(r.ids)) for r in rows[:32]):
        _note("their Trainer's train_dataset does not hold train.json's rows in order: the row checks read "
              "TokenizedDataset's")
        return None
    ctx["trainer_rows"] = rows
    return rows


def training_rows(ctx) -> tuple[list[Row], str]:
    """The rows to judge, and where from: their Trainer's when it trains on rows other than TokenizedDataset's
    (what is trained is what counts), else TokenizedDataset's."""
    course, trained = course_rows(ctx), trainer_rows(ctx)
    if trained is not None:
        same = not isinstance(course, Finding) and all(
            (a.ids, a.labels) == (b.ids, b.labels) for a, b in zip(course[:32], trained[:32]))
        if not same:
            if "rows_note" not in ctx:
                ctx["rows_note"] = True
                failed = f" ({course.cause})" if isinstance(course, Finding) else ""
                _note(f"train_model trains on rows other than TokenizedDataset's{failed}: the row, answer and prompt "
                      "checks read the rows its Trainer trains on")
            return trained, "their Trainer's train_dataset"
    if isinstance(course, Finding):
        raise course
    return course, "TokenizedDataset"


def supervised_text(tokenizer, row: Row) -> str:
    from sft_contract.rows import supervised_positions

    return tokenizer.decode([row.ids[k] for k in supervised_positions(row.labels)], skip_special_tokens=True)


def _valid(ctx, value: float, correct: float) -> bool:
    judge = getattr(ctx["homework.data"], "is_answer_valid", None)
    try:
        if judge is not None:
            return bool(judge(value, correct))
    except Exception:  # their judge failing: fall back to the course's rule
        pass
    return abs(round(value, 3) - round(correct, 3)) < 0.05 * abs(round(correct, 3)) if abs(correct) >= 1e-6 \
        else abs(value - correct) < 1e-3
