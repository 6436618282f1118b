"""TRL's ``SFTTrainer`` with the kit's adapters (TRL is a test-only dependency, pinned in the ``test`` extra).

One-task kit configs train under TRL's own ``SFTTrainer`` as LoRA does. A multi-task adapter needs each example's
``task_ids``, which TRL drops: ``hf_adapter_kit.training.trl.TaskRoutedSFTTrainer`` keeps and collates them. Checked
on the tiny Llama and the tiny Qwen3, Mistral and Phi-3 (conftest.py): a two-task Hyperformer++ (PEFT) trains with
TRL's defaults (gradient checkpointing on), the loss of one task's examples reaches that task's embedding only, the
tasks answer differently, and the saved adapter reloads with PEFT's own ``from_pretrained`` to the same outputs. On
Gemma 3's text model TRL 1.16 trains nothing, PEFT's LoRA included (marked, strict: it shows once TRL is fixed).
"""

from __future__ import annotations

import datasets
import peft
import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer


trl = pytest.importorskip("trl")

from trl import SFTConfig, SFTTrainer  # noqa: E402

import hf_adapter_kit as kit  # noqa: E402
from hf_adapter_kit import AdapterKitError, get_config  # noqa: E402
from hf_adapter_kit.backends import get_backend  # noqa: E402
from hf_adapter_kit.training.trl import WRITTEN_AGAINST, TaskIdsCollator, TaskRoutedSFTTrainer  # noqa: E402
from tests.conftest import CHAT_FAMILIES  # noqa: E402


TASKS = ["polarity", "subjectivity"]
EXAMPLES = {  # (user message, answer) per task
    "polarity": [("What a great flight!", "positive"), ("They lost my bag again.", "negative")],
    "subjectivity": [("The flight leaves at noon.", "objective"), ("I adore this airline.", "subjective")],
}
IDS = torch.tensor([[5, 6, 7, 8, 9]])


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def instructions(tasks=TASKS, repeat: int = 4, column: bool = True) -> datasets.Dataset:
    """TRL's conversational prompt/completion rows, with each example's task in a ``task_ids`` column."""
    rows = [
        {"prompt": chat(text), "completion": [{"role": "assistant", "content": answer}]}
        | ({"task_ids": task} if column else {})
        for task in tasks
        for text, answer in EXAMPLES[task]
    ]
    return datasets.Dataset.from_list(rows * repeat)


def sft_config(folder, **changes) -> SFTConfig:
    """TRL's defaults (gradient checkpointing on) but bf16, which TRL refuses on a CPU, and a few quick steps."""
    settings = dict(
        output_dir=str(folder), max_steps=4, per_device_train_batch_size=4, learning_rate=1e-2, bf16=False,
        report_to="none", save_strategy="no", disable_tqdm=True, seed=0,
    )  # fmt: skip
    return SFTConfig(**{**settings, **changes})


def model_dir(family: str, tiny_llm_dir: str, chat_llm_dir) -> str:
    return tiny_llm_dir if family == "llama" else chat_llm_dir(family)


def logits(model, task) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS, task_ids=[task]).logits


def trainable(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


# -- one task: TRL's own SFTTrainer --------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["lora", "pfeiffer", "parallel", "hyperformer"])
def test_one_task_kit_configs_train_with_trls_own_trainer_and_reload(tiny_llm_dir, tmp_path, method):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_dir)
    config = get_config(method, backend="peft", task_type="CAUSAL_LM")
    base = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    trainer = SFTTrainer(model=base, args=sft_config(tmp_path), train_dataset=instructions(TASKS[:1], column=False),
                         processing_class=tokenizer, peft_config=config)  # fmt: skip
    before = trainable(trainer.model)
    trainer.train()
    after = trainable(trainer.model)
    assert before and [n for n in before if torch.equal(after[n], before[n])] == []
    trainer.save_model(str(tmp_path / "adapter"))
    model = trainer.model.eval()
    reloaded = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llm_dir), tmp_path / "adapter")
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(input_ids=IDS).logits, model(input_ids=IDS).logits)


def test_trls_own_trainer_gives_a_multitask_adapter_no_task_ids(tiny_llm_dir, tmp_path):
    """Why TaskRoutedSFTTrainer exists: TRL keeps only its own columns and builds batches of ids and labels."""
    config = get_config("hyperformer", backend="peft", task_type="CAUSAL_LM", tasks=TASKS)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_llm_dir), args=sft_config(tmp_path),
                         train_dataset=instructions(), processing_class=AutoTokenizer.from_pretrained(tiny_llm_dir),
                         peft_config=config)  # fmt: skip
    with pytest.raises(AdapterKitError, match=r"`task_ids`=None is not valid: this adapter serves 2 tasks"):
        trainer.train()


# TRL's bug, not the kit's: PEFT's own LoRA fails the same (test_trl_trains_a_gemma3_text_model_with_lora)
TRL_ON_GEMMA3 = pytest.mark.xfail(
    strict=True,
    raises=AttributeError,
    reason="TRL 1.16's fused LM head (trl/trainer/utils.py, add_fused_lm_head) runs `model.base_model` as the "
    "backbone; transformers 4.57's Gemma3ForCausalLM names its base_model_prefix 'language_model', an attribute it "
    "lacks, so base_model is the whole model, whose output has no last_hidden_state",
)
TRL_FAMILIES = ["llama", *(pytest.param(f, marks=TRL_ON_GEMMA3) if f == "gemma3_text" else f for f in CHAT_FAMILIES)]


@TRL_ON_GEMMA3
def test_trl_trains_a_gemma3_text_model_with_lora(chat_llm_dir, tmp_path):
    folder = chat_llm_dir("gemma3_text")
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(folder), args=sft_config(tmp_path),
                         train_dataset=instructions(TASKS[:1], column=False),
                         processing_class=AutoTokenizer.from_pretrained(folder),
                         peft_config=peft.LoraConfig(task_type="CAUSAL_LM", target_modules=["q_proj", "v_proj"]))  # fmt: skip
    trainer.train()


# -- several tasks: TaskRoutedSFTTrainer ---------------------------------------------------------------------------
@pytest.mark.parametrize("family", TRL_FAMILIES)
def test_a_two_task_hyperformer_trains_routes_and_reloads(tiny_llm_dir, chat_llm_dir, tmp_path, family):
    folder = model_dir(family, tiny_llm_dir, chat_llm_dir)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = get_config("hyperformer", backend="peft", task_type="CAUSAL_LM", tasks=TASKS)
    data = instructions()
    trainer = TaskRoutedSFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(folder), args=sft_config(tmp_path), train_dataset=data,
        eval_dataset=instructions(repeat=1), processing_class=tokenizer, peft_config=config,
    )  # fmt: skip
    assert trainer.args.gradient_checkpointing  # TRL's default: blocks recompute in their first run's task context
    model = trainer.model
    embeddings = {n: p for n, p in model.named_parameters() if ".task_embeddings." in n}
    assert sorted(n.rsplit(".", 1)[1] for n in embeddings) == ["0", "1"]
    before = {n: p.detach().clone() for n, p in embeddings.items()}
    trainer.train()
    assert all(not torch.equal(p, before[n]) for n, p in embeddings.items())  # both tasks' embeddings learned
    assert torch.isfinite(torch.tensor(trainer.evaluate()["eval_loss"]))

    # the loss of one task's examples reaches that task's embedding only, through TRL's collator and loss
    for index, task in enumerate(TASKS):
        rows = [trainer.train_dataset[i] for i in range(trainer.train_dataset.num_rows)]
        batch = trainer.data_collator([r for r in rows if r["task_ids"] == task][:2])
        assert batch["task_ids"] == [task, task]
        model.train().zero_grad(set_to_none=True)
        trainer.compute_loss(model, batch).backward()
        grads = {n.rsplit(".", 1)[1]: p.grad for n, p in embeddings.items()}
        assert grads[str(index)].abs().sum() > 0 and grads[str(1 - index)] is None
    model.zero_grad(set_to_none=True)

    model.eval()
    trained = {task: logits(model, task) for task in TASKS}
    assert not torch.allclose(trained[TASKS[0]], trained[TASKS[1]])
    trainer.save_model(str(tmp_path / "adapter"))
    reloaded = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(folder), tmp_path / "adapter")
    reloaded.eval()
    for task in TASKS:
        assert torch.equal(logits(reloaded, task), trained[task])
    settings = dict(max_new_tokens=4, min_new_tokens=4, do_sample=False)
    prompt = torch.tensor([tokenizer.apply_chat_template(chat("Nice crew."), add_generation_prompt=True)])
    with torch.no_grad():
        for task in TASKS:
            expected = model.generate(input_ids=prompt, task_ids=task, **settings)
            assert torch.equal(reloaded.generate(input_ids=prompt, task_ids=task, **settings), expected)
            with kit.task_context(task):  # transformers' pipeline over the PEFT model, in the task's context
                generator = transformers.pipeline("text-generation", model=reloaded, tokenizer=tokenizer)
                out = generator(chat("Nice crew."), return_tensors=True, **settings)
            assert out[0]["generated_token_ids"] == expected[0].tolist()
            # the kit reads TRL's plain PEFT folder: the method from its peft_type, the kind and the tasks from it
            served = kit.pipeline(model=str(tmp_path / "adapter"), tokenizer=tokenizer, task_ids=task)
            assert (
                served(chat("Nice crew."), return_tensors=True, **settings)[0]["generated_token_ids"]
                == out[0]["generated_token_ids"]
            )


def test_gradient_checkpointing_trains_the_same_weights(tiny_llm_dir, tmp_path):
    """With checkpointing (TRL's default) the blocks recomputed during the backward pass route each example as the
    forward pass did: the same steps as without it."""
    config = get_config("hyperformer", backend="peft", task_type="CAUSAL_LM", tasks=TASKS)
    trained = []
    for checkpointing in (True, False):
        args = sft_config(tmp_path / str(checkpointing), gradient_checkpointing=checkpointing, learning_rate=1e-3)
        trainer = TaskRoutedSFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(tiny_llm_dir), args=args, train_dataset=instructions(),
            processing_class=AutoTokenizer.from_pretrained(tiny_llm_dir), peft_config=config,
        )  # fmt: skip
        trainer.train()
        assert trainer.model.get_base_model().is_gradient_checkpointing == checkpointing
        trained.append(trainable(trainer.model))
    assert trained[0].keys() == trained[1].keys()
    for name, weight in trained[0].items():
        torch.testing.assert_close(weight, trained[1][name], rtol=1e-4, atol=1e-6, msg=name)


def test_an_adapters_model_trains_routed_too(tiny_llm_dir, tmp_path):
    """On ``adapters`` the model comes with its adapter attached (no ``peft_config``); its forward takes the
    ``task_ids``, task indices here."""
    base = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    config = get_config("parallel", backend="adapters", tasks=TASKS)
    model = get_backend("adapters").attach(base, config, "routed", kind="causal-lm")
    data = instructions().map(lambda row: {"task_ids": TASKS.index(row["task_ids"])})
    trainer = TaskRoutedSFTTrainer(model=model, args=sft_config(tmp_path), train_dataset=data,
                                   processing_class=AutoTokenizer.from_pretrained(tiny_llm_dir))  # fmt: skip
    before = trainable(model)
    trainer.train()
    after = trainable(model)
    assert all(not torch.equal(after[n], before[n]) for n in before)
    model.eval()
    assert not torch.allclose(logits(model, 0), logits(model, 1))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"packing": True}, r"`packing`=True is not valid: False with task_ids"),
        ({"padding_free": True}, r"`padding_free`=True is not valid: False with task_ids"),
        (
            {"column": False},
            r"`train_dataset`=\"a dataset with the columns \['prompt', 'completion'\]\" is not valid: a `task_ids` c",
        ),
        ({"eval": True}, r"`eval_dataset\['test'\]`=.* is not valid: a `task_ids` column"),
    ],
)
def test_what_cannot_route_is_refused_before_anything(tiny_llm_dir, tmp_path, changes, match):
    changes = dict(changes)
    column, evaluate = changes.pop("column", True), changes.pop("eval", False)
    eval_dataset = datasets.DatasetDict(test=instructions(column=False)) if evaluate else None
    config = get_config("hyperformer", backend="peft", task_type="CAUSAL_LM", tasks=TASKS)
    base = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    with pytest.raises(AdapterKitError, match=match):
        TaskRoutedSFTTrainer(model=base, args=sft_config(tmp_path / "out", **changes),
                             train_dataset=instructions(column=column), eval_dataset=eval_dataset,
                             processing_class=AutoTokenizer.from_pretrained(tiny_llm_dir), peft_config=config)  # fmt: skip
    assert not (tmp_path / "out").exists() and not isinstance(base, peft.PeftModel)
    assert not any(isinstance(m, peft.tuners.tuners_utils.BaseTunerLayer) for m in base.modules())


def test_the_collator_carries_task_ids_beside_any_collator():
    seen = []

    def inner(features):
        seen.append(features)
        return {"input_ids": torch.tensor([f["input_ids"] for f in features])}

    inner.pad_token_id = 7
    collator = TaskIdsCollator(inner)
    batch = collator([{"input_ids": [1, 2], "task_ids": 1}, {"input_ids": [3, 4], "task_ids": 0}])
    assert torch.equal(batch["task_ids"], torch.tensor([1, 0])) and batch["task_ids"].dtype == torch.long
    assert seen[-1] == [{"input_ids": [1, 2]}, {"input_ids": [3, 4]}]  # the wrapped collator never sees them
    names = collator([{"input_ids": [1], "task_ids": "polarity"}, {"input_ids": [2], "task_ids": 1}])
    assert names["task_ids"] == ["polarity", 1]  # names (or a mix) go to the adapter, which resolves them
    assert "task_ids" not in collator([{"input_ids": [1]}]) and collator.pad_token_id == 7


def test_written_against_the_installed_trl():
    """TaskRouting extends SFTTrainer's own column filter and wraps the collator it builds: TRL internals, checked
    again on another release."""
    assert trl.__version__.startswith(WRITTEN_AGAINST + "."), (
        f"training/trl.py was written against trl {WRITTEN_AGAINST}.x; {trl.__version__} is installed: re-check "
        "TaskRouting against SFTTrainer, then update WRITTEN_AGAINST."
    )
    assert "_set_signature_columns_if_needed" in vars(SFTTrainer)
