"""Model card templates, shipped inside the package as ``hf_adapter_kit.model_cards``."""
