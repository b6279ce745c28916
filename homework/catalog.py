"""Short explanations keyed by row of ../shared/sft-failure-catalog.md, reused by the guard and tests."""

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
    9: "half precision: fp16/bf16 on this device gives NaN or a 40-500x slowdown on CPU. Use fp32 on CPU.",
    10: "gradient-accumulation normalization: the loss must be divided by the supervised-token count of the whole "
        "accumulated batch.",
    11: "train/inference prompt mismatch: build the prompt with one function for both.",
    12: "right padding in batched generation: pad tokens between prompt and continuation change the output. Left-pad "
        "prompts (with their attention mask) when generating in batches.",
    13: "closing tag never emitted: EOS or the closing tag is not supervised, or the token budget is too small; report "
        "unanswered apart from wrong.",
    14: "adapter save/load: the reloaded model does not match the trained one. Load with PeftModel.from_pretrained.",
    15: "weights never move: the learning rate is 0 (warmup longer than the run, or lr=0) or no parameter is trainable.",
}


def explain(row: int) -> str:
    return f"[failure catalog row {row}] {CATALOG[row]}"
