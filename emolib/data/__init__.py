"""Data: CREMA-D manifests, actor-disjoint splits, datasets, the face-crop and feature caches, and the synthetic generator."""
