"""weaksam: WeakSAM weakly-supervised detection and instance segmentation as a Snakemake workflow."""

__version__ = "0.1.0"
