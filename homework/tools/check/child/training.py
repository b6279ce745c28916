"""Their Trainer, instrumented: arguments older transformers took are translated, each step is recorded, the
run stops after a few steps of small batches, and what it saved is read; the whole run's schedule is judged
at their settings."""

from __future__ import annotations

import ast
import inspect
import math
import warnings
from pathlib import Path

from . import shared
from .shared import CHECK_BATCH, COMPAT, _note, where_called

# arguments transformers 5 removed, and what replaces each where something does
RENAMED = {"evaluation_strategy": "eval_strategy", "no_cuda": "use_cpu", "warmup_ratio": "warmup_steps",
           "overwrite_output_dir": None, "logging_dir": None, "use_mps_device": None,
           "push_to_hub_token": None, "push_to_hub_model_id": None, "push_to_hub_organization": None}


class Session:
    """The Trainers their code builds, what they trained, and what they saved."""

    def __init__(self, steps: int):
        self.steps, self.trainers, self.saved, self.recorders = steps, [], [], []
        self.before: dict = {}  # trainable tensors at the start of training
        self.after: dict = {}  # the same tensors at its end, before their code merges or unloads anything
        self.trained_model = None
        self.probe = None  # prompt ids whose logits tell the trained model from the base and from a reload
        self.logits: dict = {}  # "trained", "base": logits on the probe at the end of training
        self.schedule = None  # (peak learning rate, the run's optimizer steps, warm-up steps)
        self.arguments_built = 0  # TrainingArguments their code built
        self.their_schedulers: dict = {}  # id -> a scheduler their code handed the Trainer (optimizers=)
        self.frozen = None  # what their own scheduler does to the learning rate over the run, when it freezes it


SESSION: Session  # this run's Trainers and what they did: made by instrument_training, replaced for a second run


def instrument_training(steps: int) -> None:
    """Every TrainingArguments accepts what older transformers did; every Trainer stops after `steps` steps."""
    import dataclasses

    from transformers import Trainer, TrainerCallback, TrainingArguments

    from sft_contract.recorder import StepRecorder

    global SESSION
    SESSION = Session(steps)
    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    original_args_init = TrainingArguments.__init__

    def args_init(self, *args, **kwargs):
        if type(self) is TrainingArguments:
            for key in [k for k in kwargs if k not in known]:
                value = kwargs.pop(key)
                COMPAT.append((key, where_called() or "?"))
                new = RENAMED.get(key)
                if new and new not in kwargs:
                    kwargs[new] = value
            if kwargs.get("fp16") or kwargs.get("bf16"):
                _note("fp16/bf16 training ran in fp32 on the CPU")
                kwargs["fp16"] = kwargs["bf16"] = False
            out = kwargs.get("output_dir") or (args[0] if args else None)
            if out and not Path(out).resolve().is_relative_to(shared.ROOT):  # a write outside the copy goes into it
                _note(f"output_dir {out!r} redirected into the temporary copy")
                if "output_dir" in kwargs:
                    kwargs["output_dir"] = str(shared.ROOT / "trainer_output")
                else:
                    args = (str(shared.ROOT / "trainer_output"), *args[1:])
            kwargs["report_to"] = "none"
            kwargs["disable_tqdm"] = True
            kwargs["use_cpu"] = True
            theirs = (kwargs.get("per_device_train_batch_size", 8), kwargs.get("gradient_accumulation_steps", 1))
            if theirs != (min(theirs[0], CHECK_BATCH), 1):
                _note(f"trained {CHECK_BATCH} rows a step, without accumulation (theirs: {theirs[0]} x {theirs[1]}); "
                      "the schedule is judged at theirs")
            kwargs["per_device_train_batch_size"] = min(theirs[0], CHECK_BATCH)
            kwargs["per_device_eval_batch_size"] = min(kwargs.get("per_device_eval_batch_size", 8), CHECK_BATCH)
            kwargs["gradient_accumulation_steps"] = 1
            original_args_init(self, *args, **kwargs)
            SESSION.arguments_built += 1
            self.check_theirs = theirs  # (batch, accumulation) as their code set them: the schedule is theirs
            return None
        return original_args_init(self, *args, **kwargs)

    TrainingArguments.__init__ = args_init
    TrainingArguments.__signature__ = inspect.signature(original_args_init)

    class StopAfter(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, lr_scheduler=None, **kwargs):
            # the whole run's schedule, as their arguments make it (this check stops it after a few steps)
            steps = their_run_steps(args, state, kwargs.get("train_dataloader"))
            SESSION.schedule = (args.learning_rate, steps, args.get_warmup_steps(steps))
            scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate may wrap it
            if scheduler is not None and scheduler is SESSION.their_schedulers.get(id(scheduler)):
                SESSION.frozen = frozen_schedule(scheduler, getattr(scheduler, "optimizer", None), steps)
            if model is not None:
                SESSION.trained_model = model
                SESSION.before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= SESSION.steps:
                control.should_training_stop = True

        def on_train_end(self, args, state, control, model=None, **kwargs):
            if model is None or not SESSION.before:
                return
            params = dict(model.named_parameters())
            SESSION.after = {n: params[n].detach().clone() for n in SESSION.before if n in params}
            if SESSION.probe is not None:
                SESSION.logits = probe_logits(model, SESSION.probe)

    original_trainer_init = Trainer.__init__

    def trainer_init(self, *args, **kwargs):
        if "tokenizer" in kwargs and "tokenizer" not in inspect.signature(original_trainer_init).parameters:
            COMPAT.append(("Trainer(tokenizer=...)", where_called() or "?"))
            kwargs.setdefault("processing_class", kwargs.pop("tokenizer"))
        optimizers = kwargs.get("optimizers") or (None, None)
        if len(optimizers) == 2 and optimizers[1] is not None:
            SESSION.their_schedulers[id(optimizers[1])] = optimizers[1]
        original_trainer_init(self, *args, **kwargs)
        recorder = StepRecorder()
        self.add_callback(recorder)
        self.add_callback(StopAfter())
        SESSION.trainers.append(self)
        SESSION.recorders.append(recorder)

    Trainer.__init__ = trainer_init
    checkpoint_as_transformers_4()


def their_run_steps(args, state, train_dataloader) -> int:
    """The optimizer steps of the run their arguments describe (the check trains smaller batches)."""
    theirs = getattr(args, "check_theirs", None)
    if args.max_steps > 0 or theirs is None:
        return state.max_steps
    try:
        rows = len(train_dataloader.dataset)
    except (AttributeError, TypeError):
        return state.max_steps
    batch, accumulation = theirs
    per_epoch = max(math.ceil(rows / (batch * max(args.world_size, 1))) // max(accumulation, 1), 1)
    return math.ceil(args.num_train_epochs * per_epoch)


FROZEN = 1e-3  # a learning rate below this fraction of its peak moves a LoRA adapter no more


def frozen_schedule(scheduler, optimizer, steps: int) -> str | None:
    """Their own scheduler stepped over the whole run (then put back): whether it takes the learning rate to
    about nothing before a quarter of the run."""
    if optimizer is None or not hasattr(scheduler, "state_dict") or steps < 4:
        return None
    saved, lrs = scheduler.state_dict(), [g["lr"] for g in optimizer.param_groups]
    seen = []
    try:
        with warnings.catch_warnings():  # "scheduler stepped before the optimizer": meant here
            warnings.simplefilter("ignore")
            for _ in range(steps):
                seen.append(optimizer.param_groups[0]["lr"])
                scheduler.step()
    except Exception:  # a scheduler that needs a metric (ReduceLROnPlateau) or more: not judged here
        return None
    finally:
        scheduler.load_state_dict(saved)
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr
    peak = max(seen)
    low = next((k for k, lr in enumerate(seen) if lr < FROZEN * peak), None)
    if peak <= 0 or low is None or low >= steps // 4:
        return None
    return (f"their {type(scheduler).__name__} takes the learning rate from {peak:g} to {seen[low]:.2g} by step {low} "
            f"of the run's {steps}: the adapter stops moving after {low / steps:.0%} of the run")


AS_TRANSFORMERS_4 = [True]  # off for a second run, once the first has shown what transformers 4 would do


def checkpoint_as_transformers_4() -> None:
    """Gradient checkpointing as transformers 4 ran it: reentrant, and the inputs left frozen unless their code
    calls enable_input_require_grads itself. transformers 5 does both for them, which would hide from the
    check a recipe that trains nothing on the course's transformers (catalog row 8)."""
    from transformers import PreTrainedModel

    enable = getattr(PreTrainedModel, "_activation_checkpointing_enable", None)
    if enable is None:
        return
    inside = [False]
    original_grads = PreTrainedModel.enable_input_require_grads

    def checkpointing(self, activation_checkpointing_kwargs=None, *args, **kwargs):
        if not AS_TRANSFORMERS_4[0]:
            return enable(self, activation_checkpointing_kwargs, *args, **kwargs)
        if activation_checkpointing_kwargs is None:
            _note("gradient checkpointing ran reentrant, without making the inputs require grad, as transformers 4 did")
            activation_checkpointing_kwargs = {"use_reentrant": True}
        inside[0] = True
        try:
            return enable(self, activation_checkpointing_kwargs, *args, **kwargs)
        finally:
            inside[0] = False

    def input_grads(self, *args, **kwargs):
        if not inside[0]:
            return original_grads(self, *args, **kwargs)

    PreTrainedModel._activation_checkpointing_enable = checkpointing
    PreTrainedModel.enable_input_require_grads = input_grads


def probe_logits(model, ids) -> dict:
    """The logits of `model` on `ids`, with its adapter and (a peft model) without."""
    was_training = model.training
    model.eval()
    try:
        out = {"trained": _logits(model, ids)}
        if hasattr(model, "disable_adapter"):
            with model.disable_adapter():
                out["base"] = _logits(model, ids)
        return out
    finally:
        model.train(was_training)


def record_saves() -> None:
    """Where their code saves a model, and what."""
    import transformers
    from peft import PeftModel

    for cls in (PeftModel, transformers.PreTrainedModel):
        original = cls.save_pretrained

        def save(self, save_directory, *args, _original=original, **kwargs):
            if not Path(save_directory).resolve().is_relative_to(shared.ROOT):  # nothing outside the copy is written
                _note(f"save_pretrained({str(save_directory)!r}) redirected into the temporary copy")
                save_directory = shared.ROOT / "saved_elsewhere" / Path(save_directory).name
            result = _original(self, save_directory, *args, **kwargs)
            # read now: an atomic save renames the directory afterwards
            SESSION.saved.append((str(Path(save_directory).resolve()), where_called(), _saved_keys(save_directory)))
            return result

        cls.save_pretrained = save


MIN_TOTAL_LR = 1e-3  # peak learning rate x optimizer steps below which a LoRA adapter (B starts at 0) barely moves


def schedule_problem(lr: float, steps: int, warmup: int) -> str | None:
    """What in the whole run's schedule leaves the adapter about where it started, or None."""
    if steps and warmup >= steps:
        return (f"the warm-up ({warmup} steps) is as long as the whole run ({steps} steps): the learning rate never "
                f"reaches its peak {lr:g}")
    if steps and lr * steps < MIN_TOTAL_LR:
        return (f"learning rate {lr:g} over the run's {steps} steps (sum {lr * steps:.2g} < {MIN_TOTAL_LR:g}) leaves "
                "the adapter about where it started")
    return None


def source_compat() -> list[tuple[str, str]]:
    """(argument, file:line) of every TrainingArguments(...) / Trainer(tokenizer=...) keyword in their sft.py that
    the installed transformers does not accept, read from the source."""
    import dataclasses

    from transformers import Trainer, TrainingArguments

    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    trainer_takes_tokenizer = "tokenizer" in inspect.signature(Trainer.__init__).parameters
    path = shared.ROOT / "homework" / "sft.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        for kw in node.keywords:
            if name == "TrainingArguments" and kw.arg and kw.arg not in known:
                found.append((kw.arg, f"homework/sft.py:{node.lineno}"))
            elif name == "Trainer" and kw.arg == "tokenizer" and not trainer_takes_tokenizer:
                found.append(("Trainer(tokenizer=...)", f"homework/sft.py:{node.lineno}"))
    return found


def _saved_keys(directory: str) -> set[str] | None:
    path = Path(directory)
    if (path / "adapter_model.safetensors").is_file():
        from safetensors import safe_open

        with safe_open(str(path / "adapter_model.safetensors"), "pt") as f:
            return set(f.keys())
    if (path / "adapter_model.bin").is_file():
        import torch

        return set(torch.load(path / "adapter_model.bin", map_location="cpu", weights_only=True))
    return None


def _logits(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=ids).logits.float()
