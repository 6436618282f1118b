"""Quiet, true logs: loading and serving an adapter prints no false alarm, and real warnings still get through."""

from __future__ import annotations

import logging

import pytest
import torch

import hf_adapter_kit as kit
from hf_adapter_kit import get_config
from hf_adapter_kit.backends import get_backend
from hf_adapter_kit.folders import AdapterMeta, attach_meta, save_adapter
from hf_adapter_kit.logs import INACTIVE_WARNING
from hf_adapter_kit.modeling import load_base_model, load_tokenizer


LABELS = ["negative", "positive"]
CASES = [("pfeiffer", "adapters"), ("hyperformer", "adapters"), ("lora", "peft"), ("pfeiffer", "peft")]


def _saved(folder: str, tmp_path, method: str, backend: str):
    base = load_base_model(folder, LABELS)
    model = get_backend(backend).attach(base, get_config(method, backend=backend), "toy")
    meta = AdapterMeta.for_model(
        base, method=method, backend=backend, adapter_name="toy", base_model=folder, label_names=LABELS
    )
    attach_meta(model, meta)
    return save_adapter(model, tmp_path / f"{method}-{backend}")


@pytest.mark.parametrize(("method", "backend"), CASES, ids=lambda x: x)
def test_loading_and_serving_print_no_false_warning(tiny_model_dirs, tmp_path, caplog, capfd, method, backend):
    folder = _saved(tiny_model_dirs["bert"], tmp_path, method, backend)
    capfd.readouterr()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        model = kit.from_pretrained(folder)
        classifier = kit.pipeline("text-classification", model=str(folder))
        predictions = classifier(["a fine day", "lost my bag again"])
    assert [p["label"] in LABELS for p in predictions] == [True, True]
    if backend == "adapters":
        assert model.active_adapters is not None and "toy" in model.active_adapters.flatten()
    printed = capfd.readouterr()
    assert INACTIVE_WARNING not in caplog.text
    assert INACTIVE_WARNING not in printed.err + printed.out
    assert not logging.getLogger("adapters.model_mixin").filters  # silenced around the load only


def test_a_real_forward_without_an_active_adapter_still_warns(tiny_model_dirs, tmp_path, caplog):
    folder = _saved(tiny_model_dirs["bert"], tmp_path, "pfeiffer", "adapters")
    model = kit.from_pretrained(folder)
    model.set_active_adapters(None)  # now the warning is true, and must be seen
    batch = load_tokenizer(tiny_model_dirs["bert"])(["a fine day"], return_tensors="pt")
    with caplog.at_level(logging.WARNING), torch.no_grad():
        model(**batch)
    assert INACTIVE_WARNING in caplog.text


def test_the_silencer_is_exact(caplog):
    """Only that one message, only inside the ``with``: other adapters warnings pass, and it passes after."""
    from hf_adapter_kit.logs import quiet_adapter_activation

    logger = logging.getLogger("adapters.model_mixin")
    with caplog.at_level(logging.WARNING):
        with quiet_adapter_activation():
            logger.warning(INACTIVE_WARNING)
            logger.warning("some other adapters warning")
        logger.warning(INACTIVE_WARNING)
    assert [r.getMessage() for r in caplog.records] == ["some other adapters warning", INACTIVE_WARNING]


def test_training_prints_no_false_file_system_warning(tiny_model_dirs, toy_files, tmp_path, capfd, monkeypatch):
    """transformers warns "mtime may not be reliable on this filesystem" whenever two checkpoints are less than a
    second apart (any short run); the kit's checkpoints are ordered by step, so that warning is not shown."""
    import os
    import warnings

    from hf_adapter_kit import train
    from hf_adapter_kit.training.trainer import MTIME_WARNING

    # Checkpoints written within the same second, as on a fast machine: the case in which transformers warns.
    monkeypatch.setattr(os.path, "getmtime", lambda path: 1_700_000_000.0)
    filters = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(
            "pfeiffer",
            "toy",
            str(tmp_path / "run"),
            model_name_or_path=tiny_model_dirs["bert"],
            num_train_epochs=3,
            per_device_train_batch_size=32,
            save_total_limit=1,
            max_length=16,
            disable_tqdm=True,
            **toy_files,
        )
    assert result.meta.training["global_steps"] == 6
    assert not [w for w in caught if MTIME_WARNING in str(w.message)]
    assert MTIME_WARNING not in capfd.readouterr().err
    assert warnings.filters == filters
