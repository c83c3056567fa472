"""Every numeric config key is finite and in range; YAML cannot explode; error messages stay short."""

import math
import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ganforge.config import RANGES, RunConfig, from_dict, load_config, load_yaml, to_flat_dict
from ganforge.errors import MAX_REASON, MAX_WHERE, ConfigError, DataError, quote
from ganforge.safe_yaml import MAX_BYTES, MAX_NODES

DEFAULTS = to_flat_dict(RunConfig())
NUMERIC = sorted(k for k, v in DEFAULTS.items() if isinstance(v, (int, float)) and not isinstance(v, bool))


def test_every_numeric_key_has_a_range_and_the_defaults_are_in_it():
    assert sorted(RANGES) == NUMERIC
    for key in NUMERIC:
        assert DEFAULTS[key] in RANGES[key], key


def _check(key, build):
    """Either the config validates with a finite, in-range value, or the error names the key."""
    try:
        cfg = build()
    except ConfigError as exc:
        assert exc.where == key
        assert len(str(exc)) <= MAX_WHERE + MAX_REASON + 2 and "\n" not in str(exc)
        return
    value = to_flat_dict(cfg)[key]
    assert math.isfinite(value) and value in RANGES[key], (key, value)


NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**80), 2**80),
                    st.sampled_from([0.0, -0.0, 1e-300, 5e-324, 1e308, 2.0**63, 2**63 - 1, 2**64]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(NUMERIC), value=NUMBERS)
def test_any_number_for_any_numeric_key_is_valid_or_a_config_error(key, value):
    section, name = key.split(".")
    _check(key, lambda: from_dict({section: {name: value}}))  # the Python API
    text = repr(value) if isinstance(value, int) else repr(float(value))  # 'nan', 'inf', '1e+308'
    _check(key, lambda: load_config(None, [f"{key}={text}"]))  # the command line


@pytest.mark.parametrize("text", [".inf", "-.inf", ".nan", "nan", "inf", "1e400", "-1e400", "'1e-3'", "true"])
@pytest.mark.parametrize("key", ["optim.lr_d", "optim.grad_clip", "loss.r1_weight", "train.steps"])
def test_yaml_spellings_of_non_finite_values(key, text):
    _check(key, lambda: load_config(None, [f"{key}={text}"]))


@pytest.mark.parametrize("override, key", [
    ("optim.lr_d=.inf", "optim.lr_d"),
    ("optim.grad_clip=.nan", "optim.grad_clip"),
    ("loss.r1_weight=nan", "loss.r1_weight"),
    ("model.dropout=1.5", "model.dropout"),
    ("data.image_size=100000", "data.image_size"),
    ("model.g_width=1000000", "model.g_width"),
    ("model.g_width=1e6", "model.g_width"),
    ("model.z_dim=10000000000000", "model.z_dim"),
    ("train.seed=-1", "train.seed"),
    ("train.eval_n=1", "train.eval_n"),
    ("optim.lr_g=2", "optim.lr_g"),
])
def test_reported_cases_name_their_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert err.value.where == key


def test_presets_are_in_range():
    for path in sorted(pathlib.Path(__file__).parent.parent.joinpath("configs").glob("*.yaml")):
        cfg = load_config(path)
        flat = to_flat_dict(cfg)
        assert all(flat[k] in RANGES[k] for k in RANGES), path


def _laughs(levels: int, use: str) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\n{use}\n"


def test_billion_laughs_file_is_refused(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(_laughs(9, "train: {steps: *a8}"))  # 9^9 items once expanded
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    assert err.value.where == str(path) and str(MAX_NODES) in err.value.reason
    assert len(str(err.value)) < 300


def test_billion_laughs_override_is_refused():
    flow = "[&a ['x','x','x','x','x','x','x','x','x']" + "".join(
        f", &{'b' * (i + 1)} [" + ", ".join([f"*{'b' * i if i else 'a'}"] * 9) + "]" for i in range(8)) + "]"
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"train.steps={flow}"])
    assert err.value.where == "train.steps" and "expand" in err.value.reason


def test_aliases_under_the_bound_give_a_short_error(tmp_path):
    path = tmp_path / "some-laughs.yaml"
    path.write_text("train:\n  steps: &s [" + ", ".join(["'lol'"] * 60) + "]\n  seed: *s\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.where == "train.steps" and len(str(err.value)) < 200


def test_small_anchors_still_work(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text("optim: &o {lr_g: 1.0e-4, lr_d: 1.0e-4}\ntrain: {steps: 5}\n")
    assert load_config(path).optim.lr_g == 1e-4


def test_deep_nesting_and_huge_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(None, ["train.steps=" + "[" * 5000 + "]" * 5000])
    deep = tmp_path / "deep.yaml"
    deep.write_text("train: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError):
        load_yaml(deep)
    big = tmp_path / "big.yaml"
    big.write_text("name: " + "x" * (MAX_BYTES + 1) + "\n")
    with pytest.raises(ConfigError, match="at most"):
        load_yaml(big)


def test_error_messages_are_capped_and_one_line():
    err = DataError("/data/" + "d" * 100_000 + "\nsecond line", "bad: " + "r" * 1_000_000)
    text = str(err)
    assert len(text) <= MAX_WHERE + MAX_REASON + 2 and "\n" not in text
    assert "more characters" in text
    with pytest.raises(ConfigError) as exc:
        load_config(None, ["name=" + "n" * 100_000])
    assert len(str(exc.value)) < 300


def test_quote_summarises_huge_and_shared_structures():
    inner = ["lol"] * 9
    for _ in range(8):  # 9^9 items if printed
        inner = [inner] * 9
    assert "list" in quote(inner) and len(quote(inner)) < 100
    assert len(quote("x" * 10**6)) < 120
    assert quote(3.5) == "3.5"
