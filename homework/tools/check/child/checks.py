"""The checks, in the order they report (RUN_ORDER is the order they run): each returns what holds, or raises
a Finding with its cause, failure-catalog row and the place in their code."""

from __future__ import annotations

import math

from . import shared, training
from .package import _llm, _train_pairs, _valid, as_built, count_imports, import_theirs, supervised_text, training_rows
from .shared import COMPAT, STUBBED, CheckTimeout, Finding, _note, crash_finding, short, theirs, where_defined
from .training import AS_TRANSFORMERS_4, Session, _logits, schedule_problem, source_compat


def check_imports(ctx):
    strays = count_imports()
    failed = import_theirs(ctx)
    if STUBBED and "homework.sft" in ctx:
        _note(f"the checks after `imports` ran with {', '.join(sorted(STUBBED))} stubbed (missing here)")
    if failed:
        raise failed
    if not ctx["homework"].__file__ or not theirs(ctx["homework"].__file__):
        raise Finding("could not run", f"`import homework` found {ctx['homework'].__file__}, not the package checked")
    for name, where, _ in (s for s in strays if not s[2]):
        _note(f"{where} imports {name} inside a function: outside the course's requirements, it fails when that runs")
    strays = [s for s in strays if s[2]]
    if strays:
        mods = ", ".join(sorted({m for m, _, _ in strays}))
        raise Finding("violation", f"imports outside the course's requirements: {mods} (installed here, but missing "
                      "on a machine with only the course's requirements)", 22, strays[0][1])
    return "homework, homework.base_llm, homework.data and homework.sft import"


def _worst(problems: list, total: int, what: str) -> tuple:
    """The most common problem (check key -> [examples]) as (cause, catalog row)."""
    key = max(problems, key=lambda k: len(problems[k]))
    first = problems[key][0]
    return f"{len(problems[key])} of {total} {what}: {first[1].what} (e.g. {first[0]!r})", first[1].row


def check_rows(ctx):
    from sft_contract.rows import row_problems

    sft, llm = ctx["homework.sft"], _llm(ctx)
    rows, source = training_rows(ctx)
    problems: dict[str, list] = {}
    for row in rows:
        found = row_problems(llm.tokenizer, row.ids, row.labels, answer=row.answer, attention_mask=row.mask)
        for p in found[:1]:
            problems.setdefault(p.check, []).append((row.question, p))
    if problems:
        cause, row = _worst(problems, len(rows), "rows")
        where = where_defined(sft.tokenize) if source == "TokenizedDataset" else where_defined(sft.train_model)
        raise Finding("violation", cause, row, where)
    return f"{len(rows)} rows of {source}: answer + EOS supervised, nothing else"


def check_answers(ctx):
    sft, llm = ctx["homework.sft"], _llm(ctx)
    rows, source = training_rows(ctx)
    unread, outside = [], []
    for row in rows:
        text = row.answer if row.answer is not None else supervised_text(llm.tokenizer, row)
        try:
            value = float(llm.parse_answer(text))
        except Exception:
            value = float("nan")
        if not math.isfinite(value):
            unread.append((row.question, text))
        elif not _valid(ctx, value, float(row.correct)):
            outside.append((row.question, row.correct, text, value))
    where = where_defined(sft.format_example) if source == "TokenizedDataset" else where_defined(sft.train_model)
    if unread:
        q, text = unread[0]
        raise Finding("violation", f"their parse_answer cannot read {len(unread)} of {len(rows)} trained answers "
                      f"(e.g. {text!r} for {q!r})", 24, where_defined(llm.parse_answer))
    if outside and shared.DATA_SUBSTITUTED:
        q, correct, text, value = outside[0]
        raise Finding("could not run", f"{len(outside)} of {len(rows)} trained answers read back outside the course's "
                      f"tolerance on this repository's data, used because theirs was missing (e.g. {correct} as "
                      f"{text!r}): not judged, the course's answers span a narrower range", None, where)
    if outside:
        q, correct, text, value = outside[0]
        raise Finding("violation", f"{len(outside)} of {len(rows)} trained answers read back outside the course's "
                      f"tolerance (e.g. {correct} is trained as {text!r}, read back as {value})", 24, where)
    return f"{len(rows)} answers read back within tolerance"


def _capture_generate(model, record: list, reply: list[int] | None = None):
    """A `model.generate` that records the ids and attention mask each call feeds; given `reply`, it answers at
    once with those ids after every prompt instead of generating."""
    import torch

    original = model.generate

    def generate(*args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(ids)
        record.append((ids.tolist(), mask.tolist()))
        if reply is not None:
            n = kwargs.get("num_return_sequences") or 1
            tail = torch.tensor([reply], dtype=ids.dtype, device=ids.device).expand(ids.shape[0], -1)
            return torch.cat([ids, tail], 1).repeat_interleave(n, 0)
        return original(*args, **kwargs)

    return original, generate


def _fed_prompts(llm, questions, replies) -> list[tuple[list[int], object]]:
    """Per question, the ids their inference (answer -> format_prompt -> batched_generate) feeds the model, and
    what their answer() returns when the model replies with the given ids."""
    fed = []
    original = llm.model.generate
    try:
        for question, reply in zip(questions, replies):  # one at a time: a batched_generate may reorder prompts
            record: list = []
            llm.model.generate = _capture_generate(llm.model, record, reply)[1]
            value = llm.answer(question)
            if not record:  # answered without the model (a lookup of known questions): read the generation path
                _note("their answer() answered training questions without calling the model (a lookup?): inference "
                      "was read through format_prompt and batched_generate")
                value = llm.parse_answer(llm.batched_generate([llm.format_prompt(question)])[0])
            if not record:
                raise Finding("could not run", "answer() never called model.generate, nor did batched_generate")
            ids, mask = record[0]  # the first call: a second one would be a re-decoding of their own
            if isinstance(value, (list, tuple)) and value:
                value = value[0]
            fed.append(([i for i, m in zip(ids[0], mask[0]) if m], value))
            llm.model.generate = original
    finally:
        llm.model.generate = original
    return fed


def check_prompt(ctx):
    """The ids inference feeds are the training row's prompt, and what training teaches the model to write
    after them reads back through their answer()."""
    from sft_contract.rows import prompt_problem, supervised_positions

    sft, llm = ctx["homework.sft"], _llm(ctx)
    rows, source = training_rows(ctx)
    rows = rows[:32]
    replies = [[ids[k] for k in supervised_positions(labels)] or [llm.tokenizer.eos_token_id]
               for ids, labels in (r.unpadded() for r in rows)]
    as_built(ctx)
    try:
        fed = _fed_prompts(llm, [r.question for r in rows], replies)
    except BaseException as exc:
        if isinstance(exc, (CheckTimeout, Finding)):
            raise
        raise crash_finding(exc, "answer()") from None
    finally:
        as_built(ctx)
    problems: dict[str, list] = {}
    unread = []
    for row, (prompt_ids, value), reply in zip(rows, fed, replies):
        ids, labels = row.unpadded()
        # the answer's text is known for TokenizedDataset's rows only (a Trainer's rows may supervise anything)
        problem = prompt_problem(llm.tokenizer, ids, labels, prompt_ids, answer=row.answer)
        if problem:
            problems.setdefault(problem.check, []).append((row.question, problem))
        elif supervised_positions(labels) and not _reads_back(llm, value, llm.tokenizer.decode(reply)):
            unread.append((row.question, llm.tokenizer.decode(reply), value))
    if problems:
        cause, row = _worst(problems, len(rows), "prompts")
        if row in (11, 20, 21):
            where = where_defined(llm.format_prompt)
        else:
            where = where_defined(sft.tokenize if source == "TokenizedDataset" else sft.train_model)
        raise Finding("violation", cause, row, where)
    if unread:
        question, reply, value = unread[0]
        raise Finding("violation", f"{len(unread)} of {len(rows)} trained continuations do not read back through "
                      f"answer(): after its prompt the model is taught {reply!r}, and answer() returns {value!r} "
                      f"(e.g. {question!r})", 24, where_defined(llm.parse_answer))
    return f"{len(rows)} prompts: inference feeds exactly the ids training conditions on, and reads its answer back"


def _reads_back(llm, value, text: str) -> bool:
    """Whether answer() returned the value their parse_answer reads in the trained continuation (whether that
    value is right is the answers check's question)."""
    for special in _end_tokens(llm.tokenizer):
        text = text.replace(special, "")
    try:
        trained = float(llm.parse_answer(text))
    except Exception:
        return True  # unreadable trained text: the answers check reports it
    if not math.isfinite(trained):
        return True
    try:
        return math.isclose(float(value), trained, rel_tol=1e-6, abs_tol=1e-9)
    except (TypeError, ValueError):
        return False


def check_batching(ctx):
    import torch

    llm = _llm(ctx)
    pairs = _train_pairs(ctx)
    by_len = sorted({len(q): q for q, _ in pairs[:64]}.items())
    questions = [q for _, q in (by_len[:1] + by_len[len(by_len) // 2:][:1] + by_len[-1:])] if len(by_len) > 2 \
        else [q for _, q in by_len]  # shortest, middle, longest: 3 lengths, 2 of them padded
    prompts = [llm.format_prompt(q) for q in questions]
    record: list = []
    original, patched = _capture_generate(llm.model, record)

    def short_generate(*args, **kwargs):  # 12 new tokens show a padding bug as well as 100 do
        kwargs["max_new_tokens"] = 12
        kwargs.pop("max_length", None)
        return patched(*args, **kwargs)

    llm.model.generate = short_generate
    torch.manual_seed(0)
    try:
        batched = llm.batched_generate(prompts)
        single = [llm.batched_generate([p])[0] for p in prompts]
    except BaseException as exc:
        if isinstance(exc, CheckTimeout):
            raise
        raise crash_finding(exc, "batched_generate()") from None
    finally:
        llm.model.generate = original
        as_built(ctx)
    where = where_defined(llm.batched_generate)
    ids, mask = record[0]
    if any(any(m == 0 for m in row[row.index(1):]) for row in mask if 1 in row):
        raise Finding("violation", "batched_generate pads on the right: pad tokens sit between each shorter prompt "
                      "and its continuation", 12, where)
    ends = _end_tokens(llm.tokenizer)
    for together, alone in zip(batched, single):
        # left-padded, yet not the same: each output is cut somewhere else than the padded width
        if _without_trailing(together, ends) != _without_trailing(alone, ends):
            raise Finding("violation", f"batched generation gave {together!r} where the prompt alone gave {alone!r}: "
                          "with left padding every output starts at the padded input's width", 25, where)
    return f"{len(prompts)} prompts of {len(set(map(sum, mask)))} lengths: left-padded, batched == one by one"


def _end_tokens(tokenizer) -> tuple[str, ...]:
    """The texts of the EOS and pad tokens: what ends or pads out a generated row."""
    return tuple(t for t in {tokenizer.eos_token, tokenizer.pad_token} if t)


def _without_trailing(text, ends: tuple) -> str:
    """`text` without the EOS or pad tokens at its end: in a batch, a row that ended early is padded out."""
    if not isinstance(text, str):
        return text
    while ends and text.endswith(ends):
        text = text[:-len(next(e for e in ends if text.endswith(e)))]
    return text


def check_steps(ctx):
    import torch

    from sft_contract.contract import movement_problem
    from sft_contract.steps import step_problem

    sft = ctx["homework.sft"]
    llm = _llm(ctx)
    training.SESSION.probe = torch.tensor([llm.tokenizer(llm.format_prompt(_train_pairs(ctx)[0][0]))["input_ids"]])
    test_model = getattr(sft, "test_model", None)
    if test_model is not None:  # train_model often ends by grading 100 questions: not this check's job
        sft.test_model = lambda *a, **k: None
    try:
        ctx["train_result"] = sft.train_model("homework/sft_model")
    except BaseException as exc:
        if isinstance(exc, CheckTimeout):
            raise
        ctx["train_error"] = exc
        finding = crash_finding(exc, "train_model()")
        if finding.row == 8:
            finding.cause += train_again(ctx, sft)
        raise finding from None
    finally:
        if test_model is not None:
            sft.test_model = test_model
    where = where_defined(sft.train_model)
    if not training.SESSION.trainers:
        raise Finding("could not run", "train_model built no transformers Trainer: a loop of its own is not "
                      "stopped after a few steps here", None, where)
    trained = [r for r in training.SESSION.recorders if r.records]
    if not trained:
        raise Finding("violation", "train_model ran no optimizer step", 15, where)
    recorder = trained[-1]
    for r in recorder.records:
        problem = step_problem(r, recorder.warmup_steps)
        if problem:
            raise Finding("violation", f"step {r.step}: {problem[1]}", problem[0], where)
    schedule = (schedule_problem(*training.SESSION.schedule) if training.SESSION.schedule else None) or training.SESSION.frozen
    if schedule:  # before the movement check: it explains tensors that did not move
        raise Finding("violation", schedule, 15, where)
    if set(training.SESSION.after) != set(training.SESSION.before):
        raise Finding("could not run", "the trained model's parameters changed names during training")
    problem = movement_problem(training.SESSION.before, training.SESSION.after, set(training.SESSION.before))
    if problem:
        raise Finding("violation", problem[0], problem[1], where)
    last = recorder.records[-1]
    return (f"{len(recorder.records)} steps: loss {recorder.records[0].loss:.3f} -> {last.loss:.3f}, "
            f"grad norm {last.grad_norm:.3g}, lr {last.learning_rate:.3g}; {len(training.SESSION.before)} trainable tensors moved")


def train_again(ctx, sft) -> str:
    """After row 8 (frozen inputs under gradient checkpointing, as transformers 4 ran it): train_model once more
    as transformers 5 runs it, so that saving and loading are still checked. What to add to the cause."""
    AS_TRANSFORMERS_4[0] = False
    probe, training.SESSION = training.SESSION.probe, Session(training.SESSION.steps)
    training.SESSION.probe = probe
    try:
        ctx["train_result"] = sft.train_model("homework/sft_model")
    except BaseException as exc:
        if isinstance(exc, CheckTimeout):
            raise
        return f"; run again as transformers 5 runs it, it raised {type(exc).__name__} too"
    ctx.pop("train_error", None)
    return "; the checks after this one judge a second run, as transformers 5 runs it (inputs made to require grad)"


def check_compat(ctx):
    import transformers

    version = transformers.__version__
    found, how = COMPAT, "run here translated"
    if not training.SESSION.arguments_built:  # train_model stopped (or trained) before building any: read the source
        found, how = source_compat(), "read from the source: train_model did not get as far as building them"
    if found:
        names = ", ".join(f"`{k}`" for k in dict.fromkeys(k for k, _ in found))
        raise Finding("incompatible", f"incompatible with transformers {version}: {names} ({how})", 23, found[0][1])
    if "train_result" not in ctx and "train_error" not in ctx:
        raise Finding("could not run", "train_model did not run")
    if not training.SESSION.arguments_built:
        return f"their sft.py passes no argument that transformers {version} removed (read from the source)"
    return f"every argument is accepted by transformers {version}"


def _normal(name: str) -> str:
    """A trainable parameter's name as peft saves it: without the adapter name and modules_to_save."""
    return name.replace(".default", "").replace(".modules_to_save", "")


def check_saved(ctx):
    if "train_result" not in ctx:
        raise Finding("could not run", "train_model did not finish")
    where = where_defined(ctx["homework.sft"].train_model)
    adapters = [(d, w, k) for d, w, k in training.SESSION.saved if k is not None]
    if not adapters:
        raise Finding("violation", "train_model saved no adapter (no save_model / save_pretrained of the trained "
                      "model)", 14, where)
    directory, at, keys = adapters[-1]
    trained = sorted(n for n in training.SESSION.before if _normal(n) not in keys)
    if trained:
        raise Finding("violation", f"{len(trained)} trained tensors are not in the saved adapter {short(directory)}, "
                      f"e.g. {trained[0]}", 19, at or where)
    return f"every trained tensor is in {short(directory)}"


def check_reload(ctx):
    if "train_result" not in ctx:
        raise Finding("could not run", "train_model did not finish")
    sft = ctx["homework.sft"]
    if "base" not in training.SESSION.logits:
        raise Finding("could not run", "the trained model is not a peft model: no base to tell a reload from")
    trained, base, ids = training.SESSION.logits["trained"], training.SESSION.logits["base"], training.SESSION.probe
    moved = float((trained - base).abs().max())
    if moved < 1e-6:
        raise Finding("could not run", "the trained model's logits are the base model's: nothing to tell a reload by")
    try:
        loaded = sft.load()
    except BaseException as exc:
        if isinstance(exc, CheckTimeout):
            raise
        finding = crash_finding(exc, "load()")
        finding.row = finding.row or 14
        finding.verdict = "violation" if finding.verdict == "error" else finding.verdict
        finding.cause += " (does load() read the directory train_model saved to?)"
        raise finding from None
    got = _logits(getattr(loaded, "model", loaded).eval(), ids)
    where = where_defined(sft.load)
    # A reload may merge the adapter into the weights, which rounds differently: judge against the trained-vs-base gap
    if float((got - base).abs().max()) < 0.01 * moved:
        raise Finding("violation", "load() returns the base model (or a fresh, untrained adapter)", 14, where)
    gap = float((got - trained).abs().max())
    if gap > max(1e-4, 0.05 * moved):
        raise Finding("violation", f"load()'s logits differ from the trained model's by {gap:.3g} (training moved "
                      f"them by {moved:.3g}): it loads another adapter", 14, where)
    return f"load() gives the trained logits (within {gap:.2g})"


CHECKS = [("imports", check_imports), ("rows", check_rows), ("answers", check_answers), ("prompt", check_prompt),
          ("batching", check_batching), ("steps", check_steps), ("compat", check_compat), ("saved", check_saved),
          ("reload", check_reload)]
# train first: the row checks then read the rows their Trainer trains on (reported in the order above)
RUN_ORDER = ["imports", "steps", "compat", "saved", "reload", "rows", "answers", "prompt", "batching"]
