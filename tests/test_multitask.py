"""A multi-task parallel adapter with a sequence-classification head and a token-classification head, trained
together and serving a batch that mixes both tasks (seed 001's sentiment + NER example), on both backends."""

from __future__ import annotations

import adapters
import peft
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from hf_adapter_kit import AdapterKitError, get_config
from hf_adapter_kit.multitask import MultiTaskModel, TaskHead


SENTIMENT = [("the crew was great", 1), ("the crew was awful", 0), ("great seats", 1), ("awful seats", 0)]
NER = ["fly to paris today", "delta flies to rome", "paris is late", "rome and paris"]
PLACES = {"paris", "rome"}
AIRLINES = {"delta"}


def _encoder(folder: str, backend: str):
    torch.manual_seed(0)
    encoder = AutoModel.from_pretrained(folder)
    config = get_config("parallel", backend=backend, tasks=["sentiment", "ner"], reduction_factor=2, scaling=1.0)
    if backend == "peft":
        config.task_type = "FEATURE_EXTRACTION"
        return peft.get_peft_model(encoder, config)
    adapters.init(encoder)
    encoder.add_adapter("mt", config=config)
    encoder.train_adapter("mt")
    return encoder


def _batch(tokenizer, rows):
    """rows: (task, text, label) with label an int (sentiment) or None (ner: tags from the words)."""
    encoded = tokenizer([text for _, text, _ in rows], padding=True, return_tensors="pt")
    labels = torch.full(encoded["input_ids"].shape, -100)
    for i, (task, text, label) in enumerate(rows):
        if task == "sentiment":
            labels[i, 0] = label
            continue
        for position, word_id in enumerate(encoded.word_ids(i)):
            if word_id is not None:
                word = text.split()[word_id]
                labels[i, position] = 1 if word in PLACES else 2 if word in AIRLINES else 0
    return encoded["input_ids"], encoded["attention_mask"], [task for task, _, _ in rows], labels


@pytest.mark.parametrize("backend", ["adapters", "peft"])
def test_sequence_and_token_heads_train_together_and_serve_a_mixed_batch(tiny_model_dirs, backend):
    folder = tiny_model_dirs["bert"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = MultiTaskModel(
        _encoder(folder, backend), {"sentiment": TaskHead("sequence", 2), "ner": TaskHead("token", 3)}, dropout=0.0
    )
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all("heads." in n or "adapter" in n or "kit_" in n for n in trainable), trainable
    rows = [("sentiment", t, y) for t, y in SENTIMENT] + [("ner", t, None) for t in NER]
    input_ids, mask, tasks, labels = _batch(tokenizer, rows)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)

    def loss_now() -> float:
        model.eval()
        with torch.no_grad():
            value = model(input_ids, mask, task_ids=tasks, labels=labels).loss.item()
        model.train()
        return value

    before = loss_now()
    for _ in range(30):
        model(input_ids, mask, task_ids=tasks, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss_now() < 0.5 * before

    model.eval()
    order = [4, 0, 5, 1, 6, 2, 7, 3]  # interleave the two tasks
    with torch.no_grad():
        mixed = model(input_ids[order], mask[order], task_ids=[tasks[i] for i in order])
        assert mixed.logits["sentiment"].shape == (4, 2) and mixed.logits["ner"].shape == (4, input_ids.shape[1], 3)
        for task, rows_alone in (("sentiment", [0, 1, 2, 3]), ("ner", [4, 5, 6, 7])):
            alone = model(input_ids[rows_alone], mask[rows_alone], task_ids=task).logits[task]
            torch.testing.assert_close(mixed.logits[task], alone, rtol=0, atol=1e-6)
            assert [order[i] for i in mixed.rows[task].tolist()] == rows_alone
    # trained: sentiment is right, and "paris" is tagged as a place
    assert mixed.logits["sentiment"].argmax(-1).tolist() == [1, 0, 1, 0]
    paris = tokenizer.convert_tokens_to_ids("paris")
    ner_rows = input_ids[order][mixed.rows["ner"]]
    tags = mixed.logits["ner"].argmax(-1)[ner_rows == paris]
    assert tags.numel() > 0 and (tags == 1).all()


def test_bad_heads_are_refused():
    with pytest.raises(AdapterKitError, match="`kind`"):
        TaskHead("span", 2)
    with pytest.raises(AdapterKitError, match="`num_labels`"):
        TaskHead("token", 0)
