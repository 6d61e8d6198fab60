"""Hardware: the GPU/torch/bitsandbytes/system probe, live GPU samples, process memory."""


from humanlike_tui.engine.hardware.gpu import (NA, NVML_TEMPERATURE_GPU, plain_dict, GpuProcess, GpuInfo, NvmlReport,
                                               load_nvml, nvml_text, error_text, probe_nvml, nvml_shutdown)
from humanlike_tui.engine.hardware.probe import (DEMO_HINT, TorchInfo, BnbInfo, SystemInfo, HardwareReport,
                                                 probe_torch, probe_bitsandbytes, ram_bytes, probe_system,
                                                 recommendations, probe_hardware, library_versions)
from humanlike_tui.engine.hardware.procmem import reset_peak_rss, peak_rss_bytes, peak_memory_bytes, device_memory
from humanlike_tui.engine.hardware.sampler import GpuSample, GpuSampler, gpu_power_reader, read_watts
