"""The failure catalog: the ways LoRA SFT with the HF Trainer is known to go wrong without an error.

This module is the catalog's one definition. `CATALOG` holds the short
explanation of each row that error messages carry (`explain(row)`); `ENTRIES` holds the full entry: the
failure, what a user sees, the cause, public reports of it and the tests of this repository that catch it.

    python -m sft_contract.catalog          # the whole catalog as markdown (docs/failure-catalog.md is this)
    python -m sft_contract.catalog 5        # row 5 only

Regenerate the document deliberately: python -m sft_contract.catalog > docs/failure-catalog.md
Standard library only: the plugin, the guard and the command line read it at start-up.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields

CATALOG = {
    1: "NaN hidden by the logger: a non-finite loss or gradient is flowing through training. Check the precision "
       "(fp16 overflows; on CPU train in fp32) and the learning rate; the logger's NaN filter is off here so you see it.",
    2: "nothing supervised: every label is -100, so the loss is 0/0. Check that the answer tokens are labelled and "
       "that padding is masked by position, not by token id.",
    3: "truncation ate the answer: the question plus answer is longer than max_length. Raise max_length or drop the rows.",
    4: "prompt/full tokenization mismatch: the prompt's tokens are not a prefix of the full row, so the wrong tokens are "
       "supervised. Encode prompt and answer separately and concatenate.",
    5: "pad == eos masked the real EOS: the last supervised token is not EOS, so the model never learns to stop. "
       "Mask padding by attention/position, never by pad_token_id.",
    6: "the collator rewrote the labels: use a collator that pads labels with -100 and keeps their values.",
    7: "label_names with a PeftModel: it feeds evaluation only; check that trainer.evaluate() returns a finite eval_loss.",
    8: "frozen inputs under gradient checkpointing: the adapter receives no gradient. Call "
       "model.enable_input_require_grads() or use non-reentrant checkpointing.",
    9: "half precision: fp16 overflows to NaN anywhere, and bf16 on a CPU without native bf16 (AMX or AVX512-BF16) is "
       "emulated, 40-500x slower. Use bf16 only where the device computes it natively, else fp32.",
    10: "gradient-accumulation normalization: the loss must be divided by the supervised-token count of the whole "
        "accumulated batch.",
    11: "train/inference prompt mismatch: build the prompt with one function for both.",
    12: "right padding in batched generation: pad tokens between prompt and continuation change the output. Left-pad "
        "prompts (with their attention mask) when generating in batches.",
    13: "closing tag never emitted: EOS or the closing tag is not supervised, or the token budget is too small; report "
        "unanswered apart from wrong.",
    14: "adapter save/load: the reloaded model does not match the trained one. Load with PeftModel.from_pretrained.",
    15: "weights never move: the learning rate is 0 (warmup longer than the run, or lr=0) or no parameter is trainable.",
    16: "the prompt is trained on: labels cover the prompt as well as the answer (completion-only loss off, or labels "
        "rebuilt from the input ids). Label every prompt position -100.",
    17: "packed rows attend to each other: rows concatenated into one sequence see the rows before them. Restart the "
        "positions at each row and keep attention inside it (TRL: packing_strategy='bfd', padding-free).",
    18: "the optimizer step ran under autocast: autocast wrapped around the whole training (backward and optimizer "
        "too), not only the forward. Let the Trainer's bf16=True place it, or wrap only the forward and the loss.",
    19: "trained but not saved: a tensor training updates (an embedding, a layer unfrozen by hand) is not in the saved "
        "adapter, so the reloaded model lacks it. Declare it in LoraConfig(modules_to_save=[...]) or save it yourself.",
    20: "a prompt template applied twice: the question is wrapped in the chat template (or instruction) once more on one "
        "side. Build the prompt in one function and apply the template there only.",
    21: "prompts that differ only in whitespace: a strip() or a trailing space/newline in one path only gives the model "
        "other tokens at inference than it was trained on. Build the prompt with one function for both.",
    22: "an import that exists only on the author's machine (an IDE, notebook or Colab module) or a syntax error: "
        "`import homework` fails anywhere else. Import only what the course's requirements install.",
    23: "an argument the installed transformers removed (`logging_dir`, `warmup_ratio`, `evaluation_strategy`, "
        "`Trainer(tokenizer=)`): TrainingArguments or Trainer fails before training. Use the current names "
        "(`warmup_steps` takes a ratio, `eval_strategy`, `processing_class`) or drop the argument.",
    24: "the trained answer does not read back: the answer text (rounded to integers, or in a format the parser cannot "
        "read) parses to a value outside the grader's tolerance. Train the answer with enough significant digits.",
    25: "batched outputs cut at the wrong position: after left padding every prompt in the batch is as long as the "
        "padded input. Cut each output at input_ids.shape[1], not at its own prompt's length.",
}


@dataclass(frozen=True)
class Entry:
    """One row of the catalog, in full."""

    failure: str
    seen: str  # what the user sees
    cause: str
    reports: str  # public issues and pull requests describing it
    caught_by: str  # what this repository checks, in words
    tests: tuple[str, ...]  # the tests that check it: "path::function"


_BATTERY = "sft_contract/checks.py"  # the SFT contract battery (the plugin runs it on the shipped recipe too)

ENTRIES = {
    1: Entry(
        failure="A NaN hidden by the logger",
        seen="The log shows `loss 0.0` and `grad_norm nan`; afterwards every adapter weight is NaN and accuracy is 0.",
        cause="`TrainingArguments.logging_nan_inf_filter` is on by default: a non-finite loss is logged as the "
              "running mean of the earlier losses (0 before the first one), while the NaN itself still goes "
              "through the backward pass and gradient clipping into the weights.",
        reports="huggingface/trl#6702; transformers PR #13619",
        caught_by="The guard switches the filter off and stops the run at the first step whose loss or gradient "
                  "norm is not finite; a healthy run is checked for a finite, positive loss and finite adapter "
                  "tensors after real steps; the CLI exits 2 on an injected NaN.",
        tests=("tests/training/test_health.py::test_guard_turns_off_the_nan_filter",
               "tests/training/test_health.py::test_nan_in_the_adapter_stops_at_step_one",
               "tests/test_sft.py::test_three_steps_are_healthy_and_move_only_the_adapter"),
    ),
    2: Entry(
        failure="Nothing supervised",
        seen="The same as row 1: a loss of 0 and a NaN gradient norm.",
        cause="Every label of a batch is -100, so the mean cross-entropy divides zero by zero targets (passing "
              "`num_items_in_batch` does not avoid it).",
        reports="pytorch#116349; trl PR #6320",
        caught_by="The pre-flight scan lists rows with no supervised label, the collator refuses such a row, and "
                  "the guard stops before the optimizer step of a batch that supervises nothing.",
        tests=("tests/training/test_collate.py::test_a_row_with_no_supervised_token_is_refused",
               "tests/training/test_health.py::test_preflight_refuses_broken_rows_with_a_table",
               "tests/training/test_health.py::test_all_masked_batch_stops_before_the_first_update"),
    ),
    3: Entry(
        failure="Truncation eats the answer",
        seen="Some rows end up with every label masked; the loss spikes to NaN now and then.",
        cause="The prompt alone is longer than `max_length`, or the input ids and the labels are cut separately, "
              "so the answer falls off the end.",
        reports="trl PR #6320; LlamaFactory#1494",
        caught_by="A row whose answer cannot fit is an error naming the file and the rows; it never becomes a "
                  "row with nothing supervised.",
        tests=("tests/text/test_tokenization.py::test_row_whose_answer_cannot_fit_is_rejected",
               "tests/text/test_tokenization.py::test_tokenized_dataset_reports_the_rows_that_cannot_fit"),
    ),
    4: Entry(
        failure="The prompt's tokens are not a prefix of the full row's",
        seen="The first answer token goes unsupervised, or the last prompt token is trained on.",
        cause="Tokenizing the prompt on its own and the whole text separately gives different ids at the "
              "boundary (a merge across it, or an added BOS), so masking the first len(prompt) ids masks the "
              "wrong tokens.",
        reports="trl#598; trl#1820; axolotl PR #214",
        caught_by="Property tests over generated questions: the prompt's ids start the row, and the supervised "
                  "ids decode to the answer followed by EOS; the pre-flight scan flags rows whose text would "
                  "merge across the boundary.",
        tests=("tests/text/test_tokenization.py::test_label_masking_invariants",
               "tests/training/test_health.py::test_preflight_warns_when_the_text_merges_across_the_boundary"),
    ),
    5: Entry(
        failure="pad == EOS masks the real EOS",
        seen="The model never stops: every output runs on to `max_new_tokens`.",
        cause="Padding is masked by token id while `pad_token_id == eos_token_id` (the case for SmolLM2-Instruct), "
              "so the one EOS the model should learn is masked with the padding.",
        reports="transformers#23530; trl#976; smol-course#159",
        caught_by="The last supervised label of every row is EOS, and padding is masked by position (the "
                  "attention mask), never by id; the contract battery checks the same on any project's tokenizer.",
        tests=("tests/text/test_tokenization.py::test_label_masking_invariants",
               "tests/training/test_collate.py::test_collation_pads_to_the_longest_row_and_keeps_labels",
               f"{_BATTERY}::every_example_supervises_its_answer_and_eos"),
    ),
    6: Entry(
        failure="The collator rewrites the labels, or cannot pad them",
        seen="The prompt is trained on, or collation fails with \"Unable to create tensor\".",
        cause="`DataCollatorForLanguageModeling` builds labels afresh from the input ids; "
              "`DataCollatorWithPadding` does not know how to pad a `labels` field.",
        reports="transformers#24546; transformers#8146",
        caught_by="Collating rows of different lengths returns each row's labels unchanged, right-padded with "
                  "-100, whatever the batch's order and make-up; the pre-flight scan has its own check.",
        tests=("tests/training/test_collate.py::test_collation_pads_to_the_longest_row_and_keeps_labels",
               "tests/training/test_collate.py::test_batch_order_and_composition_do_not_change_a_rows_labels",
               f"{_BATTERY}::collation_keeps_every_rows_labels_and_eos"),
    ),
    7: Entry(
        failure="`label_names` with a PeftModel",
        seen="A warning at start-up, and no `eval_loss` in the evaluation results.",
        cause="`label_names` is read by evaluation only; the training loss never looks at it, so setting it "
              "(or not) changes evaluation and nothing else.",
        reports="transformers PR #32085; transformers PR #39265",
        caught_by="With `label_names` set on a PeftModel, `trainer.evaluate()` returns a finite `eval_loss`.",
        tests=("tests/test_sft.py::test_eval_loss_is_finite_with_label_names",),
    ),
    8: Entry(
        failure="Gradient checkpointing with frozen inputs",
        seen="\"element 0 of tensors does not require grad\", or adapter layers that silently never train.",
        cause="Reentrant checkpointing over a frozen embedding: nothing entering the checkpointed block needs a "
              "gradient, so none flows back to the adapters; `enable_input_require_grads` was not called.",
        reports="transformers#26334; transformers#25841; peft#742",
        caught_by="With checkpointing on, every `lora_B` has a nonzero gradient after one real step; a gradient "
                  "norm of exactly 0 stops the guard.",
        tests=("tests/test_sft.py::test_three_steps_are_healthy_and_move_only_the_adapter",
               "tests/training/test_health.py::test_assert_training_healthy_messages_name_the_cause"),
    ),
    9: Entry(
        failure="Half precision on the wrong device",
        seen="NaN losses (logged as 0), or on a CPU an error or a step 40 to 500 times slower.",
        cause="fp16 overflows on weights trained in bf16, and the precision flags are set without regard to the "
              "device the run lands on. A CPU computes bf16 natively only with AMX or AVX512-BF16; without them "
              "bf16 is emulated and far slower than fp32, with them bf16 mixed precision is the faster choice.",
        reports="Qwen3#670; pytorch#118499; transformers#27769",
        caught_by="One function picks the precision: bf16 mixed precision only on a CUDA card that supports it or a "
                  "CPU with native bf16 that a probe measures faster, else fp32; fp16 anywhere, bf16 on a CPU that "
                  "emulates it, and trainable parameters that are not fp32 are refused by the scan and by `doctor`.",
        tests=("tests/training/test_health.py::test_half_precision_is_refused_on_cpu_and_fp32_is_chosen",
               "tests/training/test_health.py::test_precision_rules_per_device_class",
               "tests/training/test_health.py::test_preflight_refuses_half_precision_adapters_on_any_device",
               "tests/runtime/test_precision.py::test_bf16_is_refused_on_a_cpu_that_emulates_it_with_the_measured_ratio"),
    ),
    10: Entry(
        failure="Loss normalization under gradient accumulation",
        seen="A loss several times too large, or a sum where a mean was meant.",
        cause="`num_items_in_batch` is not handled the same way everywhere, so the loss is divided by the wrong "
              "count of supervised tokens.",
        reports="transformers#34263; transformers PR #34191",
        caught_by="Batch 4 with no accumulation and batch 2 accumulated twice give the same first-step loss and "
                  "gradient norm.",
        tests=("tests/test_sft.py::test_grad_accumulation_gives_the_same_first_step",),
    ),
    11: Entry(
        failure="Training and inference build different prompts",
        seen="Accuracy near 0 although the training loss looks fine.",
        cause="Training saw the raw `question answer` text and evaluation went through a chat template, or the "
              "other way round.",
        reports="transformers#46531",
        caught_by="One function builds the prompt for both; the ids fed at inference equal the prompt ids that "
                  "training masked.",
        tests=("tests/text/test_prompt.py::test_inference_prompt_ids_are_the_masked_training_prompt",
               "tests/test_sft.py::test_inference_prompt_equals_training_prompt",
               f"{_BATTERY}::inference_prompt_is_the_training_prompt"),
    ),
    12: Entry(
        failure="Right padding in batched generation",
        seen="Accuracy depends on the evaluation batch size.",
        cause="With right padding, pad tokens sit between the prompt and the tokens being generated.",
        reports="transformers#34842",
        caught_by="Greedy generation in a batch gives exactly what it gives one prompt at a time (in fp32; in "
                  "bf16 only near-ties may differ).",
        tests=(f"{_BATTERY}::batched_generation_equals_one_by_one",),
    ),
    13: Entry(
        failure="The closing tag is never written",
        seen="Accuracy 0, with every output cut off at the token limit.",
        cause="EOS was never supervised (row 5), or the generation budget is too small for the answer.",
        reports="trl#6966",
        caught_by="The answer parser is tested on edge cases (no closing tag among them), and evaluation counts "
                  "\"no answer\" separately from \"wrong answer\".",
        tests=("tests/text/test_answers.py::test_parse_answer_edge_cases",
               "tests/test_data.py::test_benchmark_counts_correct_wrong_and_unanswered"),
    ),
    14: Entry(
        failure="The adapter is lost between save and load",
        seen="The evaluated model scores exactly like the base model.",
        cause="Evaluation creates a fresh adapter with `get_peft_model` instead of loading the trained one, "
              "loads from the wrong path, or the adapter's keys are filtered out on the way.",
        reports="peft#317; transformers#24551",
        caught_by="Saving and reloading gives the trained model's logits, which differ from the base model's.",
        tests=("tests/test_sft.py::test_adapter_save_and_reload_gives_identical_logits",
               f"{_BATTERY}::save_and_reload_gives_the_trained_logits"),
    ),
    15: Entry(
        failure="The weights never move",
        seen="`learning_rate 0.0` in the log and a flat loss.",
        cause="A warm-up longer than a short run, or parameters handed to the optimizer before the model was "
              "moved to its device; a learning rate of 0 or no trainable parameter has the same effect.",
        reports="lm-sys/FastChat#2558",
        caught_by="Every adapter tensor differs from its initial value after a few real steps; a learning rate "
                  "of 0 stops the run at step 1; a warm-up that cannot reach the peak learning rate warns.",
        tests=("tests/test_sft.py::test_three_steps_are_healthy_and_move_only_the_adapter",
               "tests/training/test_health.py::test_zero_learning_rate_stops_at_step_one",
               "tests/training/test_health.py::test_guard_warns_when_the_warmup_cannot_reach_the_peak"),
    ),
    16: Entry(
        failure="The prompt is trained on",
        seen="The loss falls, but answers barely improve: most supervised tokens are the prompt's, so the model "
             "mostly learns to write questions.",
        cause="Completion-only loss is off: TRL's `completion_only_loss=False`, prompt and completion flattened into "
              "one text field, or a collator that builds the labels from the input ids.",
        reports="huggingface/trl#1507; huggingface/open-r1#648",
        caught_by="The supervised tokens of every row start right after the prompt and decode to the answer and EOS; "
                  "the pre-flight scan lists rows that supervise their prompt; the contract battery checks the same "
                  "on any project (a TRL project with completion-only loss off fails it).",
        tests=("tests/sft_contract/test_rows.py::test_each_row_fault_is_named_with_its_catalog_row",
               "tests/sft_contract/test_trl.py::test_each_seeded_trl_misconfiguration_fails_with_its_cause"),
    ),
    17: Entry(
        failure="Packed rows attend to each other",
        seen="Nothing in the loss, which may even fall faster; the model learns from context that inference never "
             "gives it.",
        cause="Packing concatenates rows into one sequence while the attention mask stays all ones and the positions "
              "run on, so each row attends to the rows packed before it (TRL's `packing_strategy=\"wrapped\"`, or "
              "any packing collator that keeps no row boundaries).",
        reports="huggingface/trl#1230; huggingface/trl#805; huggingface/trl#3067",
        caught_by="Each row's per-token losses in a collated batch equal its losses when collated alone; the "
                  "contract battery runs this on this project's collator and on any project's.",
        tests=("tests/sft_contract/test_checks.py::test_rows_stay_apart_names_a_packing_that_leaks",
               "tests/sft_contract/test_trl.py::test_each_seeded_trl_misconfiguration_fails_with_its_cause",
               f"{_BATTERY}::rows_in_a_batch_train_as_if_alone"),
    ),
    18: Entry(
        failure="The optimizer step runs under autocast",
        seen="No NaN and no error: the loss stays where it started (3.2 after 6 steps where fp32 reached 0.7) while "
             "the run reports healthy steps. Measured on a bf16-capable CPU with autocast around `trainer.train()`.",
        cause="`torch.autocast` wrapped around the whole training loop instead of the forward pass: the backward "
              "and the optimizer's update run under it as well. PyTorch's documentation says autocast should wrap "
              "only the forward pass and the loss; `TrainingArguments(bf16=True)` does exactly that.",
        reports="pytorch/pytorch#120376 (a whole loop under autocast trained far worse than the forward alone); "
                "PyTorch's automatic mixed precision documentation",
        caught_by="The guard and the contract's first-steps check look, at every optimizer step, whether autocast is "
                  "on, and stop naming this row.",
        tests=("tests/training/test_health.py::test_an_optimizer_step_under_autocast_stops_naming_row_18",
               "tests/sft_contract/test_contract.py::test_first_steps_name_an_optimizer_step_under_autocast"),
    ),
    19: Entry(
        failure="Trained, but not saved",
        seen="Training goes well; the reloaded adapter scores worse, or like the base model.",
        cause="`save_pretrained` of a peft model saves the adapter's own tensors (and `modules_to_save`); anything "
              "else made trainable by hand (`embed_tokens.weight.requires_grad_(True)`, a resized vocabulary) trains "
              "and is dropped from the adapter file.",
        reports="huggingface/peft#3585; huggingface/peft#349; huggingface/peft#1689",
        caught_by="The checker runs the package's own train_model for 3 steps and compares every tensor that "
                  "trained with the keys of the adapter it saved.",
        tests=("tests/homework_check/test_check_packages.py::test_each_defect_is_flagged_with_its_cause_and_row",),
    ),
    20: Entry(
        failure="A prompt template applied twice",
        seen="Accuracy near 0 after a training run whose loss looked fine.",
        cause="The question is passed through `apply_chat_template` (or an instruction wrapper) in `format_example` "
              "and again in `tokenize` or `format_prompt`, so one side sees a template inside a template.",
        reports="sgl-project/sglang#888; evalplus/evalplus#207 (the template's special tokens added a second time)",
        caught_by="The prompt ids inference feeds are compared with the training row's prompt; when one side "
                  "repeats the other's opening, the cause is named as this row.",
        tests=("tests/sft_contract/test_rows.py::test_prompt_mismatches_with_a_cause_of_their_own",
               "tests/homework_check/test_check_packages.py::test_each_defect_is_flagged_with_its_cause_and_row"),
    ),
    21: Entry(
        failure="Training and inference prompts differ only in whitespace",
        seen="Accuracy well below what the training loss suggests; the outputs start oddly (a space, a newline).",
        cause="A `strip()`, a trailing space or a newline in one path only: the texts look the same, the token "
              "ids at the end of the prompt differ, and the model continues from a position it never trained on.",
        reports="openvla/openvla#104; FastEval/FastEval#26; karpathy/llama2.c#180",
        caught_by="Prompt ids compared token for token; prompts whose texts are equal once whitespace is removed "
                  "are named as this row.",
        tests=("tests/sft_contract/test_rows.py::test_prompt_mismatches_with_a_cause_of_their_own",
               "tests/homework_check/test_check_packages.py::test_each_defect_is_flagged_with_its_cause_and_row"),
    ),
    22: Entry(
        failure="Imports that exist only on the author's machine",
        seen="`import homework` fails on the grader with ModuleNotFoundError (or a SyntaxError), and the grade is 0.",
        cause="An IDE, notebook or Colab module (`google.colab`, `IPython`, a debugger) imported at the top of a "
              "module, or a package installed by hand and missing from the course's requirements.",
        reports="isl-org/ZoeDepth#47; bhavita/Auto-Audio-Books#3",
        caught_by="The checker scans every import of the package against the standard library and the course's "
                  "requirements and imports the package in a fresh process.",
        tests=("tests/homework_check/test_check_packages.py::test_each_defect_is_flagged_with_its_cause_and_row",),
    ),
    23: Entry(
        failure="Arguments a newer transformers removed",
        seen="`TypeError: TrainingArguments.__init__() got an unexpected keyword argument 'logging_dir'` (or "
             "`warmup_ratio`, `evaluation_strategy`, `Trainer(tokenizer=...)`) before the first step.",
        cause="The code was written for transformers 4; transformers 5 (5.15.0 for `logging_dir` and `warmup_ratio`) removed arguments deprecated there.",
        reports="vllm-project/semantic-router#3925 (removed in transformers 5.15.0); sciknoworg/OntoLearner#348",
        caught_by="The checker reports each removed argument as its own verdict, translates it (`warmup_ratio` "
                  "to `warmup_steps`, `tokenizer` to `processing_class`, `logging_dir` dropped) and still runs the "
                  "training checks on the recipe as written.",
        tests=("tests/homework_check/test_check_packages.py::test_each_defect_is_flagged_with_its_cause_and_row",),
    ),
    24: Entry(
        failure="The trained answer does not read back",
        seen="Accuracy stuck below what the loss suggests, mostly on small or fractional answers.",
        cause="`format_example` rounds the answer (to an integer, or to 2 decimals) so that 0.3048 is trained as 0, "
              "or writes it in a form the package's own `parse_answer` cannot read; or the inference prompt already "
              "ends with the opening tag, so the text the parser needs never appears in the output.",
        reports="no public report found; seen in public submissions of the course's homework",
        caught_by="The checker formats every training answer with the package's `format_example`, reads it back "
                  "with its `parse_answer` and counts the answers outside the grader's tolerance; then it makes the "
                  "model reply to each inference prompt with what training teaches and checks that `answer()` "
                  "returns the trained value.",
        tests=("tests/homework_check/test_check_packages.py::test_each_defect_is_flagged_with_its_cause_and_row",),
    ),
    25: Entry(
        failure="Batched outputs cut at the wrong position",
        seen="Answers generated in a batch begin with the end of their own prompt, or lose their first tokens; "
             "one question at a time they are right.",
        cause="`batched_generate` left-pads, then cuts each output at its own prompt's unpadded length (or at "
              "another prompt's) instead of the padded width all prompts share.",
        reports="no public report found; seen in public submissions of the course's homework",
        caught_by="The checker generates prompts of three lengths in one batch and one at a time, and compares "
                  "the texts after checking that the padding is on the left.",
        tests=("tests/homework_check/test_check_packages.py::test_each_defect_is_flagged_with_its_cause_and_row",),
    ),
}

_LABELS = {"failure": "Failure", "seen": "What you see", "cause": "Cause", "reports": "Reported in",
           "caught_by": "How this repository catches it", "tests": "Tests"}


COMMAND = "sft_contract.catalog"


def explain(row: int, command: str = COMMAND) -> str:
    """Row `row` in one line, ending with the command that prints it in full (`command`: a module whose
    `python -m` prints this catalog; homework's messages name its own re-export)."""
    return f"[failure catalog row {row}] {CATALOG[row]} (python -m {command} {row})"


def entry_markdown(row: int) -> str:
    """Row `row` as a markdown section."""
    e = ENTRIES[row]
    lines = [f"## Row {row}: {e.failure}", ""]
    for f in fields(Entry):
        if f.name == "failure":
            continue
        value = getattr(e, f.name)
        if f.name == "tests":
            value = ", ".join(f"`{t}`" for t in value)
        lines.append(f"- **{_LABELS[f.name]}.** {value}")
    lines += ["", f"Short form, as error messages print it: {CATALOG[row]}"]
    return "\n".join(lines) + "\n"


def catalog_markdown() -> str:
    """The whole catalog as markdown: an index table, then one section per row."""
    head = [
        "# The failure catalog",
        "",
        "Ways LoRA supervised fine-tuning with the Hugging Face Trainer is known to go wrong without an error,",
        "each reported publicly. Every row is caught by at least one test of this repository, and the training",
        "run itself stops with the row's number instead of training on. An error message that says",
        "`[failure catalog row N]` points here.",
        "",
        "This file is generated; do not edit it by hand. Its source is `sft_contract/catalog.py`, the SFT",
        "contract kit's catalog, and this command prints it:",
        "",
        "```bash",
        "python -m sft_contract.catalog > docs/failure-catalog.md   # regenerate",
        "python -m sft_contract.catalog 5                           # one row in a terminal",
        "```",
        "",
        "| row | failure | what you see |",
        "| --- | --- | --- |",
    ]
    head += [f"| {row} | {e.failure} | {e.seen} |" for row, e in ENTRIES.items()]
    return "\n".join(head) + "\n" + "".join("\n" + entry_markdown(row) for row in ENTRIES)


def main(argv: list[str] | None = None, prog: str = COMMAND) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.stdout.write(catalog_markdown())
        return 0
    if len(args) == 1 and args[0].isdigit() and int(args[0]) in ENTRIES:
        sys.stdout.write(entry_markdown(int(args[0])))
        return 0
    print(f"usage: python -m {prog} [ROW]  (ROW is 1 to {max(ENTRIES)})", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
