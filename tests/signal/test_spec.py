import pytest

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.signal.spec import PreprocessSpec


def test_spec_round_trips_through_json_and_hash_is_stable() -> None:
    spec = PreprocessSpec()
    again = PreprocessSpec.from_json(spec.to_json())
    assert again == spec
    assert again.hash() == spec.hash()
    assert PreprocessSpec(fs=500.0).hash() != spec.hash()
    assert spec.window_samples == 2500


def test_spec_rejects_bad_settings_in_one_message() -> None:
    with pytest.raises(EcgMoeError, match="fs must be.*bandpass"):
        PreprocessSpec(fs=10.0, bandpass_hz=(0.5, 45.0))


def test_spec_rejects_unknown_fields() -> None:
    with pytest.raises(EcgMoeError, match="unknown fields"):
        PreprocessSpec.from_dict({"fs": 250.0, "bogus": 1})
