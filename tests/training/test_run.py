"""train_model end to end on a few rows: checkpoints, resume, metrics, plots, and the CLI's errors."""

import json
import math

import pytest
from transformers import TrainerCallback

from homework.sft import train_model
from homework.training.checkpoints import checkpoints_dir, last_complete_checkpoint
from tests.conftest import run_cli

TINY = dict(limit=16, batch_size=4, max_steps=4, save_steps=2, evaluate=False, progress=False, seed=0,
            learning_rate=1e-3, warmup_steps=0)


class InterruptAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_resume_continues_its_own_run_to_the_uninterrupted_loss(tmp_path, capsys):
    """Run A finishes (checkpoints 2 and 4). Run B, the same recipe, is interrupted by Ctrl-C after step 1: it saves
    a checkpoint, says how to resume and leaves A's adapter alone. --resume continues B -- not A's newer checkpoint,
    not one copied in beside B's -- refuses a changed learning rate, applies --no-eval, and ends on A's loss. Once B
    is finished, a further --resume trains nothing and replaces nothing."""
    import shutil

    from homework.runtime.errors import HomeworkError
    from homework.training.checkpoints import previous_runs_dir

    out = tmp_path / "sft_model"
    full = train_model(out, **TINY)  # run A
    a_adapter = (out / "adapter_model.safetensors").read_bytes()
    b = {**TINY, "evaluate": True}
    with pytest.raises(KeyboardInterrupt):
        train_model(out, callbacks=[InterruptAt(1)], **b)
    assert "Resume with: python -m homework.sft train --resume" in capsys.readouterr().err
    assert (out / "adapter_model.safetensors").read_bytes() == a_adapter  # an interrupted run writes no adapter
    root = checkpoints_dir(out)
    assert last_complete_checkpoint(root).name == "checkpoint-1"
    assert sorted(p.name for p in previous_runs_dir(root).glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    shutil.copytree(previous_runs_dir(root) / "checkpoint-4", root / "checkpoint-9")  # another run's, complete
    with pytest.raises(HomeworkError, match=r"--lr 0.005 \(the run's: 0.001\)"):
        train_model(out, resume=True, **{**b, "learning_rate": 5e-3})
    resumed = train_model(out, resume=True, **{**b, "evaluate": False, "progress": True})
    assert [r.step for r in resumed.records] == [2, 3, 4]
    assert resumed.records[-1].loss == pytest.approx(full.records[-1].loss, abs=1e-5)
    assert "applied from this call: --eval False" in capsys.readouterr().out
    assert resumed.accuracy is None and not (out / "eval_results.json").exists()
    assert [s["step"] for s in json.loads((out / "metrics.json").read_text())["steps"]] == [2, 3, 4]
    assert (out / "training_curves.png").stat().st_size > 1000
    saved = (out / "adapter_model.safetensors").read_bytes()
    with pytest.raises(HomeworkError, match="trained 0 optimizer steps; the run had already finished at step 4"):
        train_model(out, resume=True, **b)
    assert (out / "adapter_model.safetensors").read_bytes() == saved


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_seeded_runs_reproduce_their_loss_trajectory(tmp_path, monkeypatch):
    from homework.base_llm import BaseLLM
    from homework.data import Dataset
    from homework.runtime import allocator
    from homework.runtime.device import resolve_placement

    tuned = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: tuned.append(1))
    a = train_model(tmp_path / "a", **{**TINY, "max_steps": 3, "save_steps": 0})
    # run b also evaluates, through an answerer right on the validation file only: each figure is its own file's
    truth = dict(Dataset("valid").data[:3])
    monkeypatch.setattr(BaseLLM, "answer", lambda self, *qs: [truth.get(q, -1.0) for q in qs])
    b = train_model(tmp_path / "b", **{**TINY, "max_steps": 3, "save_steps": 0, "evaluate": True, "eval_limit": 3})
    assert (b.accuracy, b.heldout_accuracy) == (1.0, 0.0)
    evaluation = json.loads((tmp_path / "b" / "metrics.json").read_text())["evaluation"]
    assert (evaluation["valid"]["accuracy"], evaluation["heldout"]["accuracy"]) == (1.0, 0.0)
    assert [r.loss for r in a.records] == [r.loss for r in b.records]
    assert all(math.isfinite(r.grad_norm) for r in a.records)
    # CPU training keeps freed memory (homework/runtime/allocator.py); the CUDA caching allocator needs no help
    assert tuned == ([1, 1] if resolve_placement().device.type == "cpu" else [])


@pytest.mark.integration
def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path):
    proc = run_cli("-m", "homework.sft", "train", "--resume", "--output-dir", str(tmp_path / "none"))
    assert proc.returncode == 2
    assert "no complete checkpoint" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.integration
def test_bad_training_file_exits_non_zero_with_one_message(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('[["How many g in 1 kg?", "a thousand"]]')
    proc = run_cli("-m", "homework.sft", "train", "--train-file", str(bad), "--output-dir", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert f"{bad}, row 0" in proc.stderr and "not a number" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.integration
@pytest.mark.timeout(600)
@pytest.mark.parametrize("fault, words", [("nan_loss", "row 1"), pytest.param("labels_all_masked",
                                          "pre-flight scan refused", marks=pytest.mark.slow)])
def test_seed_failure_stops_train_and_keeps_the_earlier_adapter(tmp_path, fault, words):
    """Issue 4 done-when: the seed's failure exits non-zero at once and leaves the earlier adapter untouched."""
    out = tmp_path / "sft_model"
    out.mkdir()
    (out / "adapter_model.safetensors").write_bytes(b"earlier adapter")
    proc = run_cli("-m", "homework.sft", "train", "--output-dir", str(out), "--limit", "8", "--batch-size", "4",
                   "--max-steps", "3", env={"HOMEWORK_FAULT": fault})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert "step 2" not in proc.stderr and "step 3" not in proc.stderr
    assert (out / "adapter_model.safetensors").read_bytes() == b"earlier adapter"


# --------------------------------------------------------------------------- what train_model decides (fast)
# The recipe, the pre-flight scan, the trainer and the grading are faked: these tests are about what train_model
# does around them -- refusals, the run's identity, what is saved and when, and what it reports.


@pytest.fixture
def fake(monkeypatch):
    from pathlib import Path
    from types import SimpleNamespace

    from homework.training import evaluation, metrics, recipe, run
    from homework.training.health import StepRecord

    state = SimpleNamespace(end=3, interrupt=False, preflight_error=None, calls=[], built=[], plotted=[],
                            evaluated=[], recipes=[])
    state.records = [StepRecord(1, 2.0, 0.5, 1e-3), StepRecord(2, 1.0, 0.5, 1e-3), StepRecord(3, 0.5, 0.5, 1e-3)]

    class Model:
        def save_pretrained(self, directory):
            (Path(directory) / "adapter_model.safetensors").write_bytes(b"adapter")

        def merge_and_unload(self):
            return SimpleNamespace(eval=lambda: "merged model")

    class Trainer:
        run_id = None
        model = "the model"

        def __init__(self):
            self.state = SimpleNamespace(global_step=0)

        def train(self, resume_from_checkpoint):
            state.calls.append(("train", resume_from_checkpoint))
            if state.interrupt:
                self.state.global_step = 1
                raise KeyboardInterrupt
            self.state.global_step = state.end

        def _save_checkpoint(self, model, trial):
            state.calls.append(("save", model, trial))

    def build_recipe(cfg, ckpt_root, callbacks=()):
        state.built.append((cfg, ckpt_root, callbacks))
        state.clock = iter([110.0, 125.5, 200.0])
        llm = SimpleNamespace(model="base model", model_spec=SimpleNamespace(name="tiny", describe=lambda: "tiny (test)"))
        placement = SimpleNamespace(describe=lambda: "cpu float32", dtype="float32")
        placement.for_generation = lambda: placement  # generation in the training precision: nothing is cast
        built = SimpleNamespace(llm=llm, model=Model(), trainer=Trainer(), guard=SimpleNamespace(records=state.records),
                                placement=placement, describe=lambda: "the recipe described")
        state.recipes.append(built)
        return built

    def run_preflight(built):
        assert built is state.recipes[-1]  # the recipe being trained is the one scanned
        state.calls.append("preflight")
        if state.preflight_error:
            raise state.preflight_error

    def graded(accuracy, answer_rate):
        return SimpleNamespace(accuracy=accuracy, answer_rate=answer_rate,
                               samples=[{"is_correct": True}, {"is_correct": False}])

    def evaluate_families(llm, files, limit):
        state.evaluated.append((llm.model, files, limit))
        return {"valid": (graded(0.5, 0.75), 4.0), "heldout": (graded(0.25, 1.0), 1.0),
                "structures": (graded(0.125, 0.5), 2.0), "handwritten": (graded(1.0, 0.875), 0.5)}

    # the clock reads 100 s at the start; from the recipe on: training starts, training ends, evaluated
    state.clock = iter(())
    monkeypatch.setattr(run, "time", SimpleNamespace(perf_counter=lambda: next(state.clock, 100.0)))
    monkeypatch.setattr(recipe, "build_recipe", build_recipe)
    monkeypatch.setattr(recipe, "run_preflight", run_preflight)
    monkeypatch.setattr(evaluation, "evaluate_families", evaluate_families)
    def plot_curves(directory, records, title):
        (directory / "training_curves.png").write_bytes(b"curves")
        state.plotted.append((records, title))

    monkeypatch.setattr(metrics, "plot_curves", plot_curves)
    return state


QUIET = dict(evaluate=False, progress=False)


def _saved_run(out):
    from homework.training.config import TRAIN_CONFIG_FILE

    return json.loads((checkpoints_dir(out) / TRAIN_CONFIG_FILE).read_text())


def test_a_fresh_run_saves_adapter_config_metrics_and_curves_and_reports_them(tmp_path, fake, capsys):
    import dataclasses

    from homework.training.config import make_config

    out = tmp_path / "sft_model"
    callbacks = [object()]
    result = train_model(str(out), callbacks=callbacks, evaluate=False, lora_rank=8, learning_rate=1e-3)
    cfg = make_config(evaluate=False, lora_rank=8, learning_rate=1e-3)
    assert fake.built == [(cfg, tmp_path / "sft_model-checkpoints", callbacks)]
    assert fake.calls == ["preflight", ("train", None)]
    assert (result.output_dir, result.records, result.train_seconds) == (out, fake.records, 15.5)
    assert result.accuracy is None and result.eval_seconds is None
    assert (out / "adapter_model.safetensors").read_bytes() == b"adapter"
    saved_config = (out / "homework_train_config.json").read_text()
    assert json.loads(saved_config) == {**dataclasses.asdict(cfg), "model": "embedded"}
    assert saved_config.startswith('{\n  "model"')  # indented: a person reads it
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == {"train_seconds": 15.5, "config": dataclasses.asdict(cfg), "model": "tiny (test)",
                     "device": "cpu float32", "processes": 1, "steps": [r.as_dict() for r in fake.records]}
    assert fake.plotted == [(fake.records, "SFT tiny r=8 lr=0.001")]
    assert (out / "training_curves.png").read_bytes() == b"curves"  # drawn into the adapter's directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sft_model", "sft_model-checkpoints"]  # no staging left
    assert capsys.readouterr().out == (
        "[homework] the recipe described\n"
        f"[homework] trained 3 steps in 15.5 s; adapter saved to {out}\n"
        f"[homework] metrics: {out / 'metrics.json'}  curves: {out / 'training_curves.png'}\n")


def test_the_run_is_named_beside_its_checkpoints_and_in_its_trainer(tmp_path, fake):
    import dataclasses
    import re

    from homework.training.config import make_config

    out = tmp_path / "sft_model"
    train_model(out, **QUIET)
    saved = _saved_run(out)
    run_id = saved.pop("run_id")
    assert re.fullmatch(r"[0-9a-f]{12}", run_id) and fake.recipes[0].trainer.run_id == run_id
    assert saved == dataclasses.asdict(make_config(**QUIET))
    train_model(out, **QUIET)
    assert fake.recipes[1].trainer.run_id not in (None, run_id)  # every fresh run has its own identity


def test_the_saved_config_names_the_model_that_was_trained(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("HOMEWORK_MODEL", "/models/from-env")
    train_model(tmp_path / "a", **QUIET)
    assert json.loads((tmp_path / "a" / "homework_train_config.json").read_text())["model"] == "/models/from-env"
    train_model(tmp_path / "b", model="/models/given", **QUIET)
    assert json.loads((tmp_path / "b" / "homework_train_config.json").read_text())["model"] == "/models/given"


def test_a_fresh_run_moves_the_earlier_runs_checkpoints_aside_and_says_so(tmp_path, fake, capsys):
    out = tmp_path / "sft_model"
    train_model(out, **QUIET)
    first = _saved_run(out)["run_id"]
    train_model(out, evaluate=False)
    aside = tmp_path / "sft_model-checkpoints.previous"
    assert json.loads((aside / "homework_train_config.json").read_text())["run_id"] == first
    assert _saved_run(out)["run_id"] != first
    assert capsys.readouterr().out.startswith(
        f"[homework] a fresh run: the earlier run's checkpoints were moved to {aside}\n")


def test_a_quiet_run_prints_nothing(tmp_path, fake, capsys):
    train_model(tmp_path / "a", **QUIET)
    train_model(tmp_path / "a", **QUIET)  # with an earlier run to move aside
    assert capsys.readouterr() == ("", "")


def test_the_preflight_scan_runs_unless_switched_off(tmp_path, fake):
    train_model(tmp_path / "a", preflight=False, **QUIET)
    assert fake.calls == [("train", None)]


def test_a_preflight_refusal_stops_the_run_before_training_or_saving(tmp_path, fake):
    from homework.runtime.errors import PreflightError

    fake.preflight_error = PreflightError("2 rows with no supervised token")
    with pytest.raises(PreflightError, match="2 rows with no supervised token"):
        train_model(tmp_path / "a", **QUIET)
    assert fake.calls == ["preflight"] and not (tmp_path / "a").exists()


def test_a_run_that_trains_no_step_saves_nothing(tmp_path, fake):
    from homework.runtime.errors import HomeworkError

    out = tmp_path / "sft_model"
    out.mkdir()
    (out / "adapter_model.safetensors").write_bytes(b"earlier adapter")
    fake.end = 0
    with pytest.raises(HomeworkError) as err:
        train_model(out, **QUIET)
    assert str(err.value) == f"trained 0 optimizer steps: nothing saved, {out} left as it was"
    assert [p.name for p in out.iterdir()] == ["adapter_model.safetensors"]
    assert (out / "adapter_model.safetensors").read_bytes() == b"earlier adapter" and fake.plotted == []


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path, fake, capsys):
    out = tmp_path / "sft_model"
    fake.interrupt = True
    with pytest.raises(KeyboardInterrupt):
        train_model(out, **QUIET)
    assert fake.calls[-1] == ("save", "the model", None)
    assert capsys.readouterr().err == (f"[homework] interrupted at step 1; checkpoint saved under {checkpoints_dir(out)}.\n"
                                       "Resume with: python -m homework.sft train --resume\n")
    assert not out.exists()


def test_ctrl_c_in_a_run_of_several_processes_keeps_the_last_periodic_checkpoint(tmp_path, fake, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # the processes stopped at different points: no collective save
    out = tmp_path / "sft_model"
    fake.interrupt = True
    with pytest.raises(KeyboardInterrupt):
        train_model(out, **QUIET)
    assert fake.calls == ["preflight", ("train", None)]
    assert f"interrupted at step 1; the last periodic checkpoint under {checkpoints_dir(out)} is kept.\n" in \
        capsys.readouterr().err


def test_only_the_main_process_writes_files(tmp_path, fake, monkeypatch):
    out = tmp_path / "sft_model"
    earlier = checkpoints_dir(out) / "checkpoint-4"
    earlier.mkdir(parents=True)
    monkeypatch.setenv("RANK", "1")
    result = train_model(out, evaluate=True)
    assert result.records == fake.records and result.accuracy is None and fake.evaluated == []
    assert not out.exists() and [p.name for p in checkpoints_dir(out).iterdir()] == ["checkpoint-4"]
    assert fake.recipes[0].trainer.run_id is not None  # its checkpoint markers name the run all the same


def test_evaluation_grades_the_merged_adapter_on_every_family_and_records_it(tmp_path, fake, capsys):
    from homework.training.config import make_config
    from homework.training.evaluation import evaluation_files

    out = tmp_path / "sft_model"
    result = train_model(out, eval_limit=4, progress=False)
    assert fake.evaluated == [("merged model", evaluation_files(make_config()), 4)]
    assert (result.accuracy, result.answer_rate, result.eval_seconds) == (0.5, 0.75, 7.5)
    assert (result.heldout_accuracy, result.heldout_answer_rate) == (0.25, 1.0)
    assert (result.structures_accuracy, result.structures_answer_rate) == (0.125, 0.5)
    assert (result.handwritten_accuracy, result.handwritten_answer_rate) == (1.0, 0.875)
    assert json.loads((out / "eval_results.json").read_text())["accuracy"] == 0.5
    evaluation = json.loads((out / "metrics.json").read_text())["evaluation"]
    assert evaluation["structures"]["accuracy"] == 0.125 and evaluation["valid"]["seconds"] == 4.0
    assert capsys.readouterr().out == "[homework] total 100 s\n"


def _checkpoint(root, step, run_id):
    from homework.training.checkpoints import mark_complete

    ckpt = root / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    mark_complete(ckpt, run_id)
    return ckpt


def test_resume_continues_the_runs_own_newest_checkpoint_with_its_config(tmp_path, fake, capsys):
    import dataclasses

    out = tmp_path / "sft_model"
    train_model(out, lora_rank=8, **QUIET)
    run_id = _saved_run(out)["run_id"]
    root = checkpoints_dir(out)
    own = _checkpoint(root, 2, run_id)
    _checkpoint(root, 3, "another-run")
    fake.calls.clear()
    train_model(out, resume=True, evaluate=False, eval_limit=3)
    cfg = fake.built[-1][0]
    assert (cfg.lora_rank, cfg.eval_limit, cfg.progress) == (8, 3, False)  # the run's own, and what may change
    assert fake.calls == ["preflight", ("train", str(own))]
    assert fake.recipes[-1].trainer.run_id == run_id and _saved_run(out) == {**dataclasses.asdict(cfg),
                                                                              "run_id": run_id}
    assert root.is_dir() and not (tmp_path / "sft_model-checkpoints.previous").exists()  # nothing moved aside
    assert capsys.readouterr().out == ""  # the run's own progress=False
    fake.end = 5
    train_model(out, resume=True, progress=True, eval_limit=2)
    assert capsys.readouterr().out.startswith(f"[homework] resuming run {run_id} from checkpoint-2; "
                                              "applied from this call: --progress True, --eval-limit 2\n")


def test_resume_says_so_plainly_when_no_option_changes(tmp_path, fake, capsys):
    out = tmp_path / "sft_model"
    _checkpoint(checkpoints_dir(out), 2, None)  # a run from before run ids: no saved config
    train_model(out, resume=True, evaluate=False)
    assert capsys.readouterr().out.startswith("[homework] resuming run (unnamed) from checkpoint-2\n")


def test_resume_without_a_checkpoint_of_the_run_is_refused(tmp_path, fake):
    from homework.runtime.errors import HomeworkError

    out = tmp_path / "sft_model"
    train_model(out, **QUIET)
    _checkpoint(checkpoints_dir(out), 4, "another-run")
    with pytest.raises(HomeworkError) as err:
        train_model(out, resume=True, **QUIET)
    assert str(err.value) == (f"--resume: no complete checkpoint of the last run under {checkpoints_dir(out)}; "
                              "start a fresh run without --resume")
    assert len(fake.built) == 1


def test_resume_refuses_a_changed_schedule(tmp_path, fake):
    from homework.runtime.errors import HomeworkError

    out = tmp_path / "sft_model"
    train_model(out, **QUIET)
    _checkpoint(checkpoints_dir(out), 2, _saved_run(out)["run_id"])
    with pytest.raises(HomeworkError, match=r"--lr 0.005 \(the run's: 0.002\)"):
        train_model(out, resume=True, learning_rate=5e-3, **QUIET)


def test_resuming_a_finished_run_trains_nothing_and_saves_nothing(tmp_path, fake):
    from homework.runtime.errors import HomeworkError

    out = tmp_path / "sft_model"
    train_model(out, **QUIET)
    _checkpoint(checkpoints_dir(out), 3, _saved_run(out)["run_id"])
    (out / "adapter_model.safetensors").write_bytes(b"finished")
    with pytest.raises(HomeworkError) as err:
        train_model(out, resume=True, **QUIET)
    assert str(err.value) == (f"trained 0 optimizer steps; the run had already finished at step 3: nothing saved, "
                              f"{out} left as it was")
    assert (out / "adapter_model.safetensors").read_bytes() == b"finished"
    fake.end = 4
    assert train_model(out, resume=True, **QUIET).records == fake.records


def test_one_step_is_enough_to_save(tmp_path, fake):
    fake.end = 1
    assert train_model(tmp_path / "a", **QUIET).records == fake.records
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file()


def test_a_run_interrupted_before_its_first_step_resumes_from_step_0(tmp_path, fake):
    # Ctrl-C before the first optimizer step saves checkpoint-0; one step after it is progress
    out = tmp_path / "sft_model"
    train_model(out, **QUIET)
    ckpt = _checkpoint(checkpoints_dir(out), 0, _saved_run(out)["run_id"])
    fake.end = 1
    train_model(out, resume=True, **QUIET)
    assert fake.calls[-1] == ("train", str(ckpt)) and (out / "adapter_model.safetensors").is_file()
