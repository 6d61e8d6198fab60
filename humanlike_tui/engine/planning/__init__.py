"""Planning: model shapes from a config, the memory estimate of a step, the plan and advice people see,
and the engine's pass plan. No training in it."""


from humanlike_tui.engine.planning.duration import (PARAM_TOKENS_PER_CORE_S, PRACTICAL_S, CpuTime, cpu_time,
                                                    cpu_tokens_per_s, run_tokens)
from humanlike_tui.engine.planning.advice import Suggestion, MemoryPlan, verdict_for, plan_memory, plan_for_hardware
from humanlike_tui.engine.planning.estimate import (BNB_4BIT_BLOCK, BNB_DQ_BLOCK, LORA_BYTES, LORA_GRAD_BYTES,
                                                    ADAMW_BYTES, ANSWER_FRACTION, LOGP_CHUNK, LOGIT_BYTES,
                                                    ALLOCATOR_SLACK, CUDA_CONTEXT_BYTES, CUDA_WORKSPACE_BYTES,
                                                    CPU_RUNTIME_BYTES, FIT_MARGIN, CHECKPOINTING_SLOWDOWN, Settings,
                                                    lora_targets, micro_batch_tokens, settings_for,
                                                    quantized_weight_bytes, lora_params, activation_terms,
                                                    checkpoint_bytes_per_token, backward_temp_bytes_per_token,
                                                    final_bytes_per_token, logits_bytes, PlanItem, estimate_items,
                                                    peak_of)
from humanlike_tui.engine.planning.passes import (VRAM_PLAN_CAP, CPU_RAM_SHARE, vram_plan_limit, auto_token_budget,
                                                  PassPlan, largest_tokens, plan_passes)
from humanlike_tui.engine.planning.shapes import (MiB, GiB, LinearShape, ModelShapes,
                                                  shapes_from_hf_config, hf_config_for, load_model_shapes)
