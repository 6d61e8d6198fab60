"""Models: the architecture table and precision rules (leaves, no torch), builtin models, loading a
base model, LoRA, GGUF import."""


from humanlike_tui.engine.models.architectures import ATTENTION, DEFAULT_TARGETS
from humanlike_tui.engine.models.builtins import (BUILTIN_VERSION, EOS_TOKEN, PAD_TOKEN, TINY_VOCAB,
                                                  TINY_CHAT_TEMPLATE, quiet_libraries, tiny_phi_config, phi2_config,
                                                  build_tokenizer, ensure_builtin)
from humanlike_tui.engine.models.catalogue import CatalogueModel, CATALOGUE, find
from humanlike_tui.engine.models.gguf_import import (StageProgress, RECIPE_VERSION, MARKER, convert_gguf_to_folder, stage_logger,
                                                     smollm2_dir, is_ready, ensure_smollm2)
from humanlike_tui.engine.hub import (PROBE_TIMEOUT_S, PROXY_VARIABLES, OFFLINE_VARIABLES, hub_address,
                                      hub_reachable, cached_anything, fail_fast_if_unreachable)
from humanlike_tui.engine.models.loading import (resolve_model_path, refuse_pickle_only, hub_error,
                                                 load_tokenizer, PAD_CANDIDATES, distinct_pad_token,
                                                 use_turn_end_as_eos, quantization_config, load_base_model,
                                                 use_fused_gelu, keep_cpu_4bit_layout)
from humanlike_tui.engine.models.lora import (target_modules, attach_lora, count_parameters, load_adapter,
                                              check_adapter_dir, file_digest)
from humanlike_tui.engine.models.precision import uses_autocast, resolve_compute, Precision, resolve_precision
from humanlike_tui.engine.models.wheel_fetch import (ByteProgress, WHEEL_ENV, GgufWheel, SMOLLM2, sha256_file,
                                                     fetch_wheel, extract_gguf)
