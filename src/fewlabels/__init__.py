"""fewlabels: train image classifiers from few labels and many unlabeled images."""

__version__ = "0.1.0"
