"""The recipes, installed with the package as ``hf_adapter_kit.recipe_files`` (see ``hf_adapter_kit/commands/parser.py``)."""
