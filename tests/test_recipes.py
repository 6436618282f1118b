"""Every recipe YAML is loaded and run for a few steps on a tiny model; recipe errors name the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hf_adapter_kit import AdapterKitError
from hf_adapter_kit.commands.cli import main
from hf_adapter_kit.commands.parser import list_recipes, load_recipe, parse_train
from tests.conftest import write_csv


RECIPES = sorted((Path(__file__).parent.parent / "recipes").glob("*/config.yaml"))


def test_every_method_has_a_recipe():
    from hf_adapter_kit import list_methods

    names = {p.parent.name for p in RECIPES}
    assert set(list_methods()) <= names  # one recipe per method, named after it; others name their tasks too
    assert all(load_recipe(p)["method"] in list_methods() for p in RECIPES)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.parent.name)
def test_recipe_runs_a_few_steps(recipe, tiny_model_dirs, tmp_path, request):
    values = load_recipe(recipe)
    assert recipe.parent.name == values["method"] or recipe.parent.name.startswith(f"{values['method']}-")
    out = tmp_path / "run"
    # instruction-tuning recipes need a decoder with a chat template: the tiny Llama stands in for SmolLM2; text-to-text
    # recipes an encoder-decoder: the tiny T5 stands in for T5-base
    task_type = values.get("task_type")
    if task_type == "causal-lm":
        model = request.getfixturevalue("tiny_llm_dir")
    elif task_type == "seq2seq-lm":
        model = request.getfixturevalue("tiny_seq2seq_dirs")["t5"]
    else:
        model = tiny_model_dirs["bert"]
    overrides = ["--model_name_or_path", model, "--max_steps", "3", "--output_dir", str(out)]
    overrides += ["--disable_tqdm", "true", "--max_train_samples", "32"]
    if values.get("tasks"):  # multi-task recipes keep their embedded tasks, cut down
        overrides += ["--max_eval_samples", "16"]
    else:
        overrides += ["--task", "toy", "--train_file", str(write_csv(tmp_path / "train.csv", 32))]
        overrides += ["--text_column", "review", "--label_column", "stars"]
    assert main(["train", "--config", str(recipe), *overrides]) == 0
    assert (out / "adapter" / "hf_adapter_kit.json").is_file()


def test_command_line_overrides_the_recipe(tmp_path):
    (model, data, method, training), _ = parse_train(
        ["--config", "recipes/lora/config.yaml", "--learning_rate", "3e-4"]
    )
    assert training.learning_rate == 0.0003 and training.num_train_epochs == 2
    assert method.method == "lora" and method.options() == {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1}
    assert model.max_length == 64 and data.max_train_samples == 4800


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("method: pfeiffer\nlora_rank: 4\n", r"Unknown argument\(s\) \['lora_rank'\] in the recipe .*max_length"),
        ("# lr\nmethod: pfeiffer\nlearning_rate: fast\n", r"recipe\.yaml, line 3: `learning_rate`='fast' .*float"),
        ("method: pfeiffer\nmethod_options:\n  reduction_factor: many\n", r"line 3: `reduction_factor`='many'"),
        ("method: pfeiffer\nbf16: perhaps\n", r"line 2: `bf16`='perhaps' is not valid: expected true or false"),
        (
            "method: pfeiffer\nsave_strategy: hourly\n",
            r"recipe\.yaml, line 2: `save_strategy`='hourly' is not valid: expected one of 'best'",
        ),
        ("method: [pfeiffer\n", r"is not valid YAML"),
        ("- pfeiffer\n", r"must hold a mapping"),
    ],
)
def test_bad_recipes(tmp_path, content, match, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(content)
    with pytest.raises(AdapterKitError, match=match):
        parse_train(["--config", str(path)])
    assert main(["train", "--config", str(path), "--output_dir", str(tmp_path / "out")]) == 2
    assert "usage:" not in (err := capsys.readouterr().err) and len(err.splitlines()) == 1  # one line, no usage
    assert not (tmp_path / "out").exists()


def test_missing_recipe_and_unknown_method(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "`config`=" in capsys.readouterr().err
    assert main(["train", "--config", "pfeifer"]) == 2
    assert "`config`='pfeifer'" in (err := capsys.readouterr().err) and "'pfeiffer'" in err
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"method": "adapterdrop", "output_dir": str(tmp_path / "out")}))
    assert main(["train", "--config", str(path)]) == 2
    assert "`method`='adapterdrop'" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_demo_takes_a_recipe(monkeypatch, tmp_path):
    """`hf-adapter-kit demo --config ...` passes the recipe's values (not only the demo defaults) to the workflow."""
    import hf_adapter_kit.commands.demo as workflow

    seen = {}
    monkeypatch.setattr(workflow, "run_demo", lambda **kwargs: seen.update(kwargs))
    assert main(["demo", "--config", "recipes/lora/config.yaml", "--output_dir", str(tmp_path / "d")]) == 0
    assert seen["method"] == "lora" and seen["learning_rate"] == 0.002 and seen["backend"] == "peft"
    assert seen["method_options"] == {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1}
    assert seen["output_dir"] == str(tmp_path / "d") and seen["max_train_samples"] == 4800


def test_recipes_by_name_from_any_directory(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)  # not the repository: the recipes come with the package
    assert set(list_recipes()) == {p.parent.name for p in RECIPES}
    (model, data, method, training), _ = parse_train(["--config", "pfeiffer"])
    assert method.method == "pfeiffer" and model.max_length == 64 and data.max_train_samples == 4800
    assert main(["recipes"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in list_recipes())


def test_method_options_are_typed_flags_shown_by_help(capsys):
    (_, _, method, _), _ = parse_train(["--method", "lora", "--r", "4", "--lora_alpha", "8"])
    assert method.options() == {"r": 4, "lora_alpha": 8}
    (_, _, method, _), _ = parse_train(["--config", "pfeiffer", "--reduction_factor", "8"])
    assert method.options() == {"reduction_factor": 8}  # the command line wins over the recipe's 16
    with pytest.raises(SystemExit):
        main(["train", "--method", "hyperformer", "--help"])
    shown = capsys.readouterr().out
    assert "--projected_dim" in shown and "--task_embedding_dim" in shown and "--learning_rate" in shown
    with pytest.raises(AdapterKitError, match=r"Unknown argument\(s\) \['--projected_dim'"):
        parse_train(["--method", "pfeiffer", "--projected_dim", "4"])  # a Hyperformer++ option, not Pfeiffer's
