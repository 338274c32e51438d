"""Models: the voice, face and fusion networks, their backbones, and checkpoint I/O (``checkpoint.find_models``, ``load_model``)."""
