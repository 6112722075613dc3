"""The command-line programs `train.py` and `eval.py`: flags in, results printed; the library never imports them."""
