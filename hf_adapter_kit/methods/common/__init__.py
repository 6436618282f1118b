"""What the kit's own methods share: option checks, task routing, placement per architecture, weight initialisation,
the PEFT tuner base and the ``adapters`` module helpers."""
