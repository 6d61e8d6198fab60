"""Config: TOML round trip, presets, overrides, and validation that reports every problem with its key."""

from __future__ import annotations

import pytest

from humanlike_tui import config as C
from humanlike_tui.errors import ConfigError


def test_defaults_match_the_brief():
    cfg = C.Config()
    assert cfg.model.name == "microsoft/phi-2"
    assert cfg.model.trust_remote_code is False
    assert cfg.quant.mode == "nf4"
    assert cfg.data.source == "HumanLLMs/Human-Like-DPO-Dataset"
    assert (cfg.data.prompt_column, cfg.data.chosen_column, cfg.data.rejected_column) == ("prompt", "chosen", "rejected")
    assert cfg.data.train_on_prompt is False
    assert cfg.train.method == "sft"


@pytest.mark.parametrize("name", ["gaming-8gb", "demo"])
def test_presets_load_and_round_trip(name, tmp_path):
    cfg = C.load_preset(name)
    path = C.save_config(cfg, tmp_path / "c.toml")
    assert C.load_config(path) == cfg


def test_preset_names_and_defaults():
    assert {"gaming-8gb", "demo"} <= set(C.preset_names())
    assert C.load_preset("gaming-8gb").model.name == "microsoft/phi-2"
    demo = C.load_preset("demo")
    assert demo.model.name == "builtin:tiny-phi" and demo.data.source == "builtin:sample"


def test_round_trip_keeps_every_value(tmp_path):
    cfg = C.Config().replace(**{"lora.target_modules": ["q_proj", "dense"], "train.learning_rate": 1e-5,
                                "quant.mode": "fp4", "data.template": "chat", "train.method": "sft+dpo",
                                "train.sft_steps": 10})
    assert C.load_config(C.save_config(cfg, tmp_path / "x.toml")) == cfg
    assert cfg.lora.target_modules == ("q_proj", "dense")


def test_every_problem_is_reported_with_its_key_path():
    _, problems = C.validate_dict({
        "train": {"learning_rate": -1, "max_steps": "many", "bogus": 1},
        "quant": {"mode": "int3"},
        "lora": {"r": 0},
        "extra": {},
    })
    text = "\n".join(problems)
    assert "train.learning_rate: must be > 0, got -1" in problems
    assert "train.max_steps: must be an integer, got 'many' (str)" in problems
    assert "train.bogus: unknown key" in text
    assert "quant.mode: must be one of nf4, fp4, int8, none, got 'int3'" in problems
    assert "lora.r: must be >= 1, got 0" in problems
    assert "extra: unknown section" in text
    assert len(problems) == 6


def test_incompatible_choices():
    _, problems = C.validate_dict({"train": {"method": "dpo"}, "data": {"rejected_column": ""},
                                   "quant": {"mode": "int8", "double_quant": True}})
    assert any(p.startswith("data.rejected_column:") for p in problems)
    assert any(p.startswith("quant.double_quant:") for p in problems)
    _, problems = C.validate_dict({"train": {"method": "sft+dpo", "max_steps": 10, "sft_steps": 10}})
    assert any(p.startswith("train.sft_steps:") for p in problems)
    _, problems = C.validate_dict({"model": {"name": "builtin:huge"}})
    assert problems == ["model.name: unknown builtin model 'builtin:huge'; choose builtin:tiny-phi or "
                        "builtin:phi-2-random or builtin:smollm2-135m"]


def test_bool_is_not_an_int_and_int_is_a_float():
    cfg, problems = C.validate_dict({"train": {"max_steps": True, "learning_rate": 1}})
    assert problems == ["train.max_steps: must be an integer, got True (bool)"]
    cfg, problems = C.validate_dict({"train": {"learning_rate": 1}})
    assert not problems and cfg.train.learning_rate == 1.0 and isinstance(cfg.train.learning_rate, float)


def test_malformed_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train\nmax_steps = 3\n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        C.load_config(path)


def test_missing_file_and_unknown_preset():
    with pytest.raises(ConfigError, match="config file not found"):
        C.load_config("/nonexistent/x.toml")
    with pytest.raises(ConfigError, match="preset 'nope' does not exist; choose one of: chat-demo, demo, gaming-8gb"):
        C.load_preset("nope")


def test_overrides_parse_toml_values_and_bare_strings():
    cfg = C.apply_overrides(C.Config(), ["train.max_steps=12", "model.name=builtin:tiny-phi",
                                         "lora.target_modules=['q_proj']", "train.learning_rate=3e-4",
                                         "model.trust_remote_code=true"])
    assert cfg.train.max_steps == 12 and cfg.model.name == "builtin:tiny-phi"
    assert cfg.lora.target_modules == ("q_proj",) and cfg.train.learning_rate == 3e-4
    assert cfg.model.trust_remote_code is True
    with pytest.raises(ConfigError, match="expected section.key=value"):
        C.apply_overrides(C.Config(), ["max_steps=3"])
    with pytest.raises(ConfigError, match="train.max_steps: must be >= 1, got 0"):
        C.apply_overrides(C.Config(), ["train.max_steps=0"])


def test_config_is_frozen():
    cfg = C.Config()
    with pytest.raises(Exception):
        cfg.train.max_steps = 3  # type: ignore[misc]


def test_field_specs_cover_every_field_with_help():
    specs = C.field_specs()
    paths = {s.path for s in specs}
    assert {"model.name", "quant.mode", "lora.r", "data.max_length", "train.eval_every", "generate.top_p"} <= paths
    assert all(s.help for s in specs)
    assert next(s for s in specs if s.path == "quant.mode").choices == C.QUANT_MODES


def test_atomic_write_leaves_no_temp_files(tmp_path):
    out = tmp_path / "out"
    C.save_config(C.Config(), out / "a.toml")
    C.save_config(C.Config(), out / "a.toml")
    assert [p.name for p in out.iterdir()] == ["a.toml"]
