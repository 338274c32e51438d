"""The synthetic CREMA-D generator: voices, drawn faces and the corpus writer (``corpus.make_synthetic_cremad``)."""
