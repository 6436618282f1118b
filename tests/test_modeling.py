"""Model resolution: the embedded default's Hub id resolves to the installed folder, offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_adapter_kit import AdapterKitError
from hf_adapter_kit.modeling import DEFAULT_MODEL, head_prefixes, load_base_model, resolve_model_path


def test_embedded_id_resolves_to_installed_safetensors(embedded_path):
    folder = Path(embedded_path)
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert "site-packages" in str(folder)


def test_local_folder_and_hub_id_pass_through(tiny_model_dirs):
    assert resolve_model_path(tiny_model_dirs["bert"]) == tiny_model_dirs["bert"]
    assert resolve_model_path("roberta-base") == "roberta-base"  # a Hub id, loaded later (needs network)


@pytest.mark.parametrize("path", ["./no/such/model", "/definitely/not/here", "a/b/c"])
def test_missing_path_is_refused(path):
    with pytest.raises(AdapterKitError, match="does not exist"):
        resolve_model_path(path)


def test_file_instead_of_folder(tmp_path):
    file = tmp_path / "model.txt"
    file.write_text("x")
    with pytest.raises(AdapterKitError, match="not a folder"):
        resolve_model_path(str(file))


def test_loaded_model_names_its_hub_id_and_labels():
    model = load_base_model(DEFAULT_MODEL, ["negative", "positive"])
    assert model.name_or_path == DEFAULT_MODEL and model.config._name_or_path == DEFAULT_MODEL
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    assert head_prefixes(model) == ["classifier"]
