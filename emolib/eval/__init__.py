"""Evaluation: metrics, split evaluation and reports, figures, exploration and result tables."""
