"""How long a run would take on a CPU: memory is rarely what stops a CPU, time is.

A CPU trains at roughly PARAM_TOKENS_PER_CORE_S / parameters tokens a second per core (fp32, LoRA, the
engine's checkpointed passes): measured on SmolLM2-135M with the smol-cpu preset, 35-57 tokens/s on 2
cores (docs/benchmarks.md), i.e. about 2.4e9 parameter-tokens a second per core. Scaled by the model's
size this gives phi-2 (2.78B parameters) under 2 tokens/s on 2 cores: the plan fits in RAM and would
still take weeks, which the plan says instead of a bare "fits".
"""

from __future__ import annotations

from dataclasses import dataclass

from humanlike_tui.config import Config

PARAM_TOKENS_PER_CORE_S = 2.4e9  # parameters x tokens per second per CPU core (SmolLM2-135M, smol-cpu)
ROW_FILL = 0.65  # rows average about this share of data.max_length (Human-Like DPO under 320: 219 tokens)
PRACTICAL_S = 4 * 3600  # longer than this on a CPU: say so, and name what is practical there


@dataclass(frozen=True)
class CpuTime:
    tokens_per_s: float
    tokens: int  # the whole run, chosen and rejected answers counted
    seconds: float
    cores: int
    steps: int

    @property
    def practical(self) -> bool:
        return self.seconds <= PRACTICAL_S

    def time_text(self) -> str:
        """'roughly 21 days for 600 steps at ~1.6 tokens/s on 2 CPU cores'."""
        from humanlike_tui.formatting import long_duration

        rate = f"{self.tokens_per_s:,.0f}" if self.tokens_per_s >= 10 else f"{self.tokens_per_s:.1f}"  # rough
        return (f"roughly {long_duration(self.seconds)} for {self.steps:,} steps at ~{rate} tokens/s "
                f"on {self.cores} CPU core{'s' if self.cores != 1 else ''}")

    def advice(self) -> str:
        """What is practical on this CPU, when this run is not ('' when it is). One text for the
        workbench's plan, `hw` and `hw --json`."""
        return "" if self.practical else PRACTICAL_ON_CPU

    def to_dict(self) -> dict:
        return {"tokens_per_s": self.tokens_per_s, "tokens": self.tokens, "seconds": self.seconds,
                "cores": self.cores, "steps": self.steps, "practical": self.practical, "time": self.time_text(),
                "advice": self.advice()}


PRACTICAL_ON_CPU = ("practical on this CPU: builtin:tiny-phi (demo preset) or builtin:smollm2-135m (smol-cpu preset); "
                    "a GPU for bigger models")


def cpu_tokens_per_s(total_params: int, cores: int) -> float:
    return PARAM_TOKENS_PER_CORE_S * max(cores, 1) / max(total_params, 1)


def run_tokens(cfg: Config) -> int:
    """Tokens the run reads: steps x rows per step x a typical row (two answers per row with DPO)."""
    per_row = cfg.data.max_length * ROW_FILL * (1 if cfg.train.method == "sft" else 2)
    return int(cfg.train.max_steps * cfg.train.batch_size * cfg.train.grad_accum * per_row)


def cpu_time(cfg: Config, total_params: int, cores: int | None) -> CpuTime:
    cores = max(int(cores or 1), 1)
    rate = cpu_tokens_per_s(total_params, cores)
    tokens = run_tokens(cfg)
    return CpuTime(rate, tokens, tokens / rate, cores, cfg.train.max_steps)
