"""The library as the command line sees it: every name the commands call, in one place.

Each name is imported on first use (PEP 562 ``__getattr__``): the training stack imports
torch and takes ~2 s, which ``fewlabels --help``, ``--version`` and a mistyped flag should
not pay. Commands write ``lib.run_training(...)``; pointing a name at ``fewlabels.api``
later is a one-line change here.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module that defines it (a module itself when the name is the module's)
WHERE = {
    "torch": "torch",
    "usable_threads": "fewlabels.core.provenance",
    "load_dataset": "fewlabels.data",
    "ImageSet": "fewlabels.data.imageset",
    "embed_pictures": "fewlabels.evaluate.embedding",
    "load_encoder": "fewlabels.evaluate.features",
    "export_model": "fewlabels.evaluate.export",
    "evaluate_model": "fewlabels.evaluate.inference",
    "load_model": "fewlabels.evaluate.inference",
    "predict_files": "fewlabels.evaluate.inference",
    "plot_confusion": "fewlabels.evaluate.plots",
    "plot_contact_sheet": "fewlabels.evaluate.plots",
    "check_figure_path": "fewlabels.evaluate.plots",
    "check_evaluation_out": "fewlabels.evaluate.inference",
    "check_out_file": "fewlabels.core.runlock",
    "write_evaluation": "fewlabels.evaluate.inference",
    "ProbeConfig": "fewlabels.train.probing",
    "run_data": "fewlabels.train.probing",
    "run_probe": "fewlabels.train.probing",
    "GenerateConfig": "fewlabels.generate",
    "run_generate": "fewlabels.generate",
    "load_images": "fewlabels.generate.quality",
    "sample_quality": "fewlabels.generate.quality",
    "reference_images": "fewlabels.generate.run",
    "METHODS": "fewlabels.methods",
    "method_class": "fewlabels.methods",
    "as_markdown": "fewlabels.methods.catalog",
    "as_text": "fewlabels.methods.catalog",
    "describe": "fewlabels.methods.catalog",
    "check_threshold": "fewlabels.methods.masking",
    "Universe": "fewlabels.select.labels",
    "merge_labels": "fewlabels.select.labels",
    "read_sidecar": "fewlabels.select.request",
    "request_labels": "fewlabels.select.request",
    "load_study": "fewlabels.study",
    "run_study": "fewlabels.study",
    "write_report": "fewlabels.study",
    "load_yaml_lines": "fewlabels.study.yamlines",
    "export_study": "fewlabels.study.tracking",
    "parse_logger_specs": "fewlabels.train.loggers",
    "TrainConfig": "fewlabels.train.loop",
    "RunConfig": "fewlabels.train.run",
    "run_training": "fewlabels.train.run",
    "resolve_preview": "fewlabels.train.single",
    "resolution_table": "fewlabels.train.resolve",
}


def __getattr__(name: str) -> Any:
    """Import ``name`` from its module on first use, then keep it as a plain global."""
    if name not in WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(WHERE[name])
    value = module if module.__name__ == name else getattr(module, name)
    globals()[name] = value
    return value
