"""The command line (``cli.py``, its parser and recipes: ``parser.py``) and the two jobs it runs beyond training: the
end-to-end walk-through of ``make demo`` (``demo.py``) and the side-by-side comparison of methods (``compare.py``)."""
