"""The figures of docs/export-and-serve.md, measured on one model folder (default: the converted
SmolLM2-135M-Instruct of builtin:smollm2-135m) with a short nf4 LoRA run on the builtin sample.

    .venv/bin/python tools/export_and_serve_figures.py [--model FOLDER] [--steps 3] [--out figures.json]

1. merge: max |logit difference| of the merged model (trained = dequantized nf4 base, and original =
   full-precision base) against the chat path (Generator: the nf4 base with the LoRA on it).
2. GGUF: for each quant type, the .gguf file read back by transformers' own GGUF loader: max |logit
   difference| against the merged model, token ids and chat template against the chat path's tokenizer.
3. serve: tokens/s of one streaming client (the official openai client) on 127.0.0.1.

Works in a private HUMANLIKE_TUI_HOME (a temp folder); the model folder is only read.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

DEFAULT_MODEL = "/tmp/exp_home/cache/models/smollm2-135m-v1-b179c952"
PROMPTS = ["How was your weekend?", "Any tips for a first marathon? I'm nervous."]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--quants", default="f16,q8_0,q5_0,q4_0")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="hlt-figures-"))
    os.environ.update(HUMANLIKE_TUI_HOME=str(home), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    import torch

    from humanlike_tui.config import load_preset
    from humanlike_tui.engine.inference.generator import Generator
    from humanlike_tui.engine.storage.merge import merged_model
    from humanlike_tui.engine.storage.runs import get_run
    from humanlike_tui.engine.training.run import run_training

    figures: dict = {"model": args.model, "torch_threads": torch.get_num_threads()}
    cfg = load_preset("demo").replace(**{
        "model.name": args.model, "lora.target_modules": [], "data.template": "auto", "data.max_rows": 48,
        "train.max_steps": args.steps, "train.batch_size": 4, "train.eval_every": 0, "train.eval_max_rows": 4,
        "train.sample_prompts": 0, "train.save_every": 0, "train.learning_rate": 1e-3, "train.warmup_steps": 1,
        "generate.max_new_tokens": 64})
    t0 = time.perf_counter()
    result = run_training(cfg, run_name="figures")
    figures["train_s"] = round(time.perf_counter() - t0, 1)
    run = get_run(result.run_id)
    print(f"trained {args.steps} steps in {figures['train_s']} s: final loss {result.summary.get('final_loss')}")

    gen = Generator.open(result.run_id, device="cpu")
    tok = gen.tok
    ids = [tok(gen_prompt(gen, p), add_special_tokens=False)["input_ids"] for p in PROMPTS]

    def logits(model, batch=ids):
        with torch.no_grad():
            return [model(input_ids=torch.tensor([x])).logits.float() for x in batch]

    def maxdiff(a, b):
        return max((x - y).abs().max().item() for x, y in zip(a, b))

    chat = logits(gen.model)
    figures["logit_scale"] = max(x.abs().max().item() for x in chat)
    merged = {}
    for into in ("trained", "original"):
        model, _ = merged_model(run.config(), run.adapter_dir, into)
        merged[into] = model
        figures[f"merge_{into}_vs_chat"] = maxdiff(logits(model), chat)
        print(f"merge into {into}: max |logit - chat| = {figures[f'merge_{into}_vs_chat']:.3g}")
    trained = merged["trained"]
    trained_logits = logits(trained)
    del merged["original"]

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from humanlike_tui.engine import data as D
    from humanlike_tui.engine.storage import gguf_export as G

    template = D.resolve_template(run.config().data.template, tok)
    figures["template"] = template
    figures["gguf"] = {}
    for quant in args.quants.split(","):
        out = home / f"gguf-{quant}"
        out.mkdir()
        t0 = time.perf_counter()
        summary = G.write_gguf(trained, tok, out / f"m-{quant}.gguf", quant=quant, template=template)
        write_s = time.perf_counter() - t0
        loaded = AutoModelForCausalLM.from_pretrained(str(out), gguf_file=f"m-{quant}.gguf", dtype=torch.float32)
        diff = maxdiff(logits(loaded), trained_logits)
        row = {"max_abs_logit_diff": diff, "file_mb": round(summary["bytes"] / 2**20, 1), "write_s": round(write_s, 1),
               "tensor_types": summary["tensor_types"]}
        if quant == "q8_0":
            gtok = AutoTokenizer.from_pretrained(str(out), gguf_file=f"m-{quant}.gguf")
            texts = [gen_prompt(gen, p) + "Pretty good, thanks 😊 123" for p in PROMPTS]
            row["same_token_ids"] = all(gtok(t, add_special_tokens=False)["input_ids"]
                                        == tok(t, add_special_tokens=False)["input_ids"] for t in texts)
            row["same_chat_template_text"] = all(gtok.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True) == gen_prompt(gen, p)
                for p in PROMPTS)
            row["eos"] = [gtok.eos_token, tok.eos_token]
        figures["gguf"][quant] = row
        print(f"gguf {quant}: {json.dumps(row)}")
        del loaded

    figures["serve"] = serve_speed(gen)
    print("serve:", json.dumps(figures["serve"]))
    gen.close()
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))


def gen_prompt(gen, prompt: str) -> str:
    from humanlike_tui.engine.inference.streaming import format_conversation

    return format_conversation(prompt, [], gen.template, gen.tok)


def serve_speed(gen, rounds: int = 3, max_tokens: int = 64) -> dict:
    import openai

    from humanlike_tui.engine.inference.server import ChatServer

    server = ChatServer(gen, "127.0.0.1", 0).start()
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=300)
    client.chat.completions.create(model=gen.name, messages=[{"role": "user", "content": "warm up"}], max_tokens=4)
    tokens = 0
    first = []
    t0 = time.perf_counter()
    for i in range(rounds):
        start = time.perf_counter()
        got_first = None
        for chunk in client.chat.completions.create(
                model=gen.name, stream=True, temperature=0.7, seed=i, max_tokens=max_tokens,
                stream_options={"include_usage": True},
                messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]):
            if chunk.choices and chunk.choices[0].delta.content and got_first is None:
                got_first = time.perf_counter() - start
            if chunk.usage:
                tokens += chunk.usage.completion_tokens
        first.append(got_first or 0.0)
    seconds = time.perf_counter() - t0
    server.stop()
    return {"rounds": rounds, "completion_tokens": tokens, "seconds": round(seconds, 2),
            "tokens_per_s": round(tokens / seconds, 1), "first_token_s_mean": round(sum(first) / len(first), 3)}


if __name__ == "__main__":
    main()
