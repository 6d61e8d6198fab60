"""The original recipe, faithfully: HF Trainer, batch 1, nf4 with fp16 compute, LoRA r=32 on
q/k/v/dense, gradient checkpointing, paged 8-bit AdamW, lr 2e-4. The baseline the engine is measured against."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable
from humanlike_tui.engine.bench.measure import (BenchData, PeakMemory, SideResult, answer_loss, free_memory,
                                                make_step_clock, timed_rate)


RECIPE_LORA = dict(r=32, lora_alpha=32, lora_dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "dense"])


def recipe_lora(model_type: str) -> dict:
    """The recipe's LoRA for this architecture: q/k/v/dense on phi (as the report had it); on other families
    the same layers under their names (the attention projections, e.g. q/k/v/o_proj on llama)."""
    from humanlike_tui.engine.models.architectures import DEFAULT_TARGETS

    targets = DEFAULT_TARGETS.get(model_type, RECIPE_LORA["target_modules"])
    return RECIPE_LORA | {"target_modules": list(targets)}


RECIPE_LR = 2e-4


def recipe_side(model_path: str, tok, data: BenchData, warmup: int, out_dir: Path,
                log: Callable[[str], None]) -> SideResult:
    """The seed report's recipe, as the anchor script runs it, on our samples."""
    import torch
    from transformers import PrinterCallback, ProgressCallback, Trainer

    cuda = torch.cuda.is_available()
    compute = torch.float16 if cuda else torch.float32
    log(f"recipe: loading {model_path} in nf4 ({compute})")
    free_memory()
    seen: list[int] = []  # real tokens of each batch, in step order (no data-loader workers, no prefetch)
    clock = make_step_clock(cuda)
    rows = [{"input_ids": list(e.prompt_ids) + list(e.chosen_ids), "attention_mask": [1] * e.length}
            for e in data.train]
    with PeakMemory(cuda) as peak:
        model = load_recipe_model(model_path, compute, cuda)
        trainer = Trainer(model=model, args=recipe_arguments(out_dir, len(rows), cuda), train_dataset=rows,
                          data_collator=recipe_collator(tok, seen), callbacks=[clock])
        for quiet in (PrinterCallback, ProgressCallback):  # they print to stdout, where --json goes
            trainer.remove_callback(quiet)
        log(f"recipe: training {len(rows)} samples at batch 1")
        trainer.train()
    mem = peak.figures()
    seconds, tokens, steps = timed_rate(list(zip(clock.wall, seen)), warmup)
    cpu_seconds = timed_rate(list(zip(clock.cpu, seen)), warmup)[0]
    eval_loss = answer_loss(model, data.held_out, next(model.parameters()).device)
    del trainer, model
    free_memory()
    optimizer = "paged_adamw_8bit" if cuda else "adamw_torch"
    return SideResult("recipe", len(rows), steps, tokens, round(seconds, 3), round(tokens / seconds, 1),
                      round(seconds / steps, 4), round(eval_loss, 4), round(cpu_seconds, 3),
                      round(tokens / max(cpu_seconds, 1e-9), 1), **mem,
                      settings={"batch": 1, "lr": RECIPE_LR, "quant": "nf4", "lora_r": RECIPE_LORA["r"],
                                "compute": str(compute).removeprefix("torch."), "grad_ckpt": True,
                                "optimizer": optimizer})


def load_recipe_model(model_path: str, compute, cuda: bool):
    """nf4 (no double quant) with `compute` matmuls, prepared for k-bit training, LoRA r=32 attached."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from humanlike_tui.engine.models.loading import keep_cpu_4bit_layout

    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute,
                             bnb_4bit_use_double_quant=False)
    model = AutoModelForCausalLM.from_pretrained(model_path, quantization_config=bnb,
                                                 device_map={"": 0} if cuda else None)
    keep_cpu_4bit_layout(model)  # a bitsandbytes CPU quirk (see model.py); no effect on a GPU
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    lora = recipe_lora(getattr(model.config, "model_type", "phi"))
    return get_peft_model(model, LoraConfig(bias="none", task_type="CAUSAL_LM", **lora))


def recipe_collator(tok, seen: list[int]):
    """DataCollatorForLanguageModeling with pad = EOS, as the recipe had it: labels = input_ids with
    every pad id masked, so the EOS at the end of each sample is masked too. Counts real tokens."""
    from transformers import DataCollatorForLanguageModeling

    recipe_tok = copy.deepcopy(tok)
    recipe_tok.pad_token = recipe_tok.eos_token
    recipe_tok.padding_side = "right"
    collator = DataCollatorForLanguageModeling(recipe_tok, mlm=False)

    def collate(features):
        batch = collator(features)
        seen.append(int(batch["attention_mask"].sum()))
        return batch

    return collate


def recipe_arguments(out_dir: Path, steps: int, cuda: bool):
    from transformers import TrainingArguments

    fields = TrainingArguments.__dataclass_fields__
    group = ({"train_sampling_strategy": "group_by_length"} if "train_sampling_strategy" in fields
             else {"group_by_length": True})  # renamed in transformers 5.x
    return TrainingArguments(
        output_dir=str(out_dir / "recipe"), warmup_steps=1, per_device_train_batch_size=1,
        gradient_accumulation_steps=1, max_steps=steps, learning_rate=RECIPE_LR,
        optim="paged_adamw_8bit" if cuda else "adamw_torch", logging_steps=10**6, save_strategy="no",
        eval_strategy="no", gradient_checkpointing=True, report_to="none", disable_tqdm=True,
        dataloader_num_workers=0, use_cpu=not cuda, seed=0, **group)
