"""Shared fixtures. No test may touch the network: hub access is forced offline here."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("EMOLIB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
