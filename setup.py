"""The package list, found rather than typed: every folder of hf_adapter_kit/ (a new method folder ships without a
line here), plus the card templates and recipes, which live at the top of the repository and ship inside the package.
Everything else about the project is in pyproject.toml."""

from setuptools import find_packages, setup


setup(
    packages=[
        *find_packages(include=["hf_adapter_kit", "hf_adapter_kit.*"]),
        "hf_adapter_kit.model_cards",
        "hf_adapter_kit.recipe_files",
    ],
    package_dir={"hf_adapter_kit.model_cards": "model_cards", "hf_adapter_kit.recipe_files": "recipes"},
)
