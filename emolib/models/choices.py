"""The names of the models' architecture options, without importing torch (the CLI lists them in its help)."""

FREEZE_CHOICES = ("none", "cnn", "all")
LAYER_CHOICES = ("last", "weighted")
POOLING_CHOICES = ("mean", "stats", "attentive-stats")
TEMPORAL_CHOICES = ("mean", "attention", "transformer")
