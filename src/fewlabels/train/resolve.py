"""Resolved settings: every training setting the user did not give, derived before the first
step from what the run knows (``Facts``: image size and channels, classes, labeled and
unlabeled counts, the budget, and for a wall-clock budget a short speed probe).

One set of rules for all data: a rule reads only the facts, never which data set it is.
Each rule says where it comes from (the benchmark recipe or paper it restates); the
methods' own rules (projector widths, view sizes, ...) sit beside their defaults, as
``MethodConfig.resolve(facts)``. A value the user gave (``--set``, a flag, a config file,
an API keyword) is never changed: it is recorded as given.

``resolve_settings(cfg, facts, probe)`` returns the settings to train with and their
record (``resolved.json``: setting, value, rule, given or derived).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from fewlabels.core.errors import ConfigError, DataError
from fewlabels.methods.rules import Facts, Resolved

__all__ = [
    "Facts",
    "Resolution",
    "Resolved",
    "apply_resolution",
    "check_facts",
    "generic_rules",
    "given_settings",
    "pow2_at_most",
    "resolution_table",
    "resolve_settings",
    "scaled",
]

# a semi-supervised run wants at least this many steps before its unlabeled ratio is lowered
MIN_SEMI_STEPS = 300
# ... and at least this many passes over the labeled set (tiny-imagenet at 32 px, 25 labels
# per class, 2 minutes: FixMatch at mu = 7 made ~12 passes and fell below supervised)
MIN_LABELED_EPOCHS = 40
# a derived backbone steps down to the next smaller one while the budget buys fewer steps
# than it wants: fastnet wants 4,000 (every CPU recipe ran fastnet-s, which makes about 3x
# fastnet's steps; all labels, 12 minutes: fastnet 209 steps 76.1%, fastnet-s 591 steps
# 82.0%) and fastnet-s 400 (below that the small convnet). They were 2,000 and 200 when the
# probe guessed half the steps runs made (made / guessed 1.4-2.0, benchmarks/bench_probe.py:
# 32 px for 20 px views, not channels-last, share 0.75): restated in made steps, so the
# choices the defaults matrix ran are the same
STEP_DOWN: dict[str, tuple[str, int]] = {
    "fastnet": ("fastnet-s", 4000),
    "fastnet-s": ("convnet", 400),
}
# ... but a semi-supervised run from scratch wants 2,000 steps of fastnet-s: its pseudo-labels
# need the steps (CIFAR-10, 10 minutes on one core, FlexMatch, 3 seeds: at 4 labels per
# class fastnet-s made 1,431-1,554 steps, 23.8%, the convnet 28.2%; at 25, fastnet-s made
# 578-667 steps, 45.9%, the convnet 47.1%; benchmarks/defaults/cifar10*-10m*.yaml)
SEMI_WANTS: dict[str, int] = {"fastnet-s": 2000}
# the measured backbone pass is this share of a whole step (augmentation, loss, optimiser):
# fitted to bench_probe.py (CIFAR-10, 1 thread, bf16, 60 s runs): runs made 0.81-1.30 of
# the steps it guesses (convnet, fastnet-s; supervised, FixMatch, VICReg)
PROBE_SHARE = 0.9

# Probe: (backbone, images through it in a step, their side in px) -> seconds of its
# forward and backward
Probe = Callable[[str, int, int], float]


@dataclass
class Resolution:
    """The resolved values by setting name (``train.lr``, ``backbone``, ``method.X``)."""

    values: dict[str, Resolved]
    facts: Facts

    def value(self, name: str, default: Any = None) -> Any:
        r = self.values.get(name)
        return default if r is None else r.value

    def record(self) -> list[dict[str, Any]]:
        """``resolved.json``'s rows."""
        return [
            {"setting": k, "value": v.value, "rule": v.rule, "given": v.given}
            for k, v in self.values.items()
        ]


def pow2_at_most(n: float) -> int:
    """The largest power of two not above ``n`` (at least 1)."""
    return 1 << max(0, math.floor(math.log2(max(1.0, n))))


def check_facts(facts: Facts) -> None:
    """Bad input the rules cannot train on: fewer labels than classes (methods that learn
    from labels)."""
    if facts.kind != "self-supervised" and 0 < facts.labeled < facts.num_classes:
        raise DataError(
            f"{facts.labeled} labels for {facts.num_classes} classes: give at least one "
            "label per class (labels_per_class, labeled_fraction or a labels file)"
        )


def backbone_rule(facts: Facts) -> Resolved:
    """The backbone from the image size (bench_semi.py: convnet on 8 px, fastnet on 32 px)."""
    if facts.image_size <= 16:
        return Resolved("convnet", "images <= 16 px: the small convnet (bench_semi digits)")
    return Resolved("fastnet", "images > 16 px: fastnet (bench_semi, bench_ssl on CIFAR)")


def optimizer_rule(facts: Facts) -> Resolved:
    """Labels-driven methods: AdamW (bench_semi.py); pretraining: SGD (bench_ssl.py TRAIN)."""
    if facts.kind == "self-supervised":
        return Resolved("sgd", "pretraining: SGD with momentum (bench_ssl, lightly's CIFAR)")
    return Resolved("adamw", "AdamW (bench_semi recipes, supervised and semi-supervised)")


def batch_rule(facts: Facts) -> Resolved:
    """The batch the loop's ``batch_size`` counts: labeled for labels-driven methods (a
    power of two, never above the labeled count), unlabeled for pretraining."""
    if facts.kind == "self-supervised":
        b = pow2_at_most(min(256, max(1, facts.unlabeled)))
        return Resolved(b, "256 unlabeled (bench_ssl), power of two <= unlabeled count")
    cap = 64 if facts.kind == "semi-supervised" else 128
    b = pow2_at_most(min(cap, max(1, facts.labeled)))
    return Resolved(
        b, f"power of two <= min({cap}, labeled count {facts.labeled}) (bench_semi: 64 / 128)"
    )


def steps_bought(facts: Facts, batch: int, mu: float) -> int | None:
    """Steps the budget buys at this batch and ratio (None: unknown)."""
    b = facts.budget
    if b.kind == "steps":
        return int(b.amount)
    if b.kind == "epochs":
        n = facts.unlabeled if facts.kind == "self-supervised" else facts.labeled
        return max(1, math.ceil(b.amount * max(1, n) / batch))
    if b.kind == "images":
        return max(1, math.ceil(b.amount / step_images(facts, batch, mu)))
    if facts.step_seconds:
        return int(b.amount / facts.step_seconds)
    return None


def mu_rule(facts: Facts, batch: int) -> Resolved:
    """FixMatch's mu = 7, lowered when the budget buys too few steps at that cost (a step
    costs about 1 + 2 mu labeled batches through the backbone): fewer than MIN_SEMI_STEPS,
    or fewer than MIN_LABELED_EPOCHS passes over the labeled set. The pseudo-labels are
    only as good as the model the labels train, so a short budget goes to the labels."""
    steps = steps_bought(facts, batch, 7.0)
    if facts.budget.kind in ("steps", "epochs") or steps is None:
        return Resolved(7.0, "FixMatch's mu = 7 (Sohn et al. 2020)")
    epoch = max(1, facts.labeled) / batch
    need = max(MIN_SEMI_STEPS, math.ceil(MIN_LABELED_EPOCHS * epoch))
    if steps >= need:
        return Resolved(7.0, f"FixMatch's mu = 7 (Sohn et al. 2020): buys {steps} steps")
    mu = math.floor((15 * steps / need - 1) / 2)
    mu = float(min(7, max(1, mu)))
    why = f"{MIN_LABELED_EPOCHS} passes over {facts.labeled} labels"
    if need == MIN_SEMI_STEPS:
        why = "the fewest a semi-supervised run wants"
    return Resolved(mu, f"mu = 7 buys {steps} steps (< {need}, {why}): lowered, cost ~ 1 + 2 mu")


def lr_rule(
    optimizer: str, batch: int, kind: str = "supervised", backbone: str | None = None
) -> Resolved:
    """Peak learning rate for the optimiser and batch (linear scaling rule for SGD / LARS,
    Goyal et al. 2017; square-root scaling for AdamW, from bench_semi.py's recipes: 3e-3
    at batch 32 for the small convnet, 1e-3 at batch 64 for the others)."""
    if optimizer == "sgd" and kind == "self-supervised":
        lr = round(0.06 * batch / 256, 6)
        return Resolved(lr, "SGD: 0.06 x batch/256 (linear scaling; lightly's CIFAR, bench_ssl)")
    if optimizer == "sgd":
        return Resolved(0.1 * batch / 256, "SGD: 0.1 x batch/256 (linear scaling rule)")
    if optimizer == "lars":
        return Resolved(0.3 * batch / 256, "LARS: 0.3 x batch/256 (linear scaling, solo-learn)")
    base, ref = (0.003, 32) if backbone == "convnet" else (0.001, 64)
    lr = round(base * math.sqrt(batch / ref), 6)
    return Resolved(lr, f"AdamW: {base} x sqrt(batch/{ref}) (bench_semi, {backbone or 'any'})")


def warmup_rule(steps: int | None) -> Resolved:
    """Warm-up: 5% of the run, but at least 50 steps and at most 20% of it (bench_ssl.py:
    a 5% warm-up of ~120 steps, 6 steps, let VICReg's loss become NaN)."""
    if not steps:
        return Resolved(0.05, "5% of the budget (steps unknown)")
    frac = round(min(0.2, max(0.05, 50 / steps)), 4)
    return Resolved(frac, f"5% of {steps} steps, >= 50 steps, <= 20% of the run")


def ema_rule(facts: Facts, steps: int | None) -> Resolved:
    """EMA of the weights (the FixMatch family's): decay 1 - 10/steps in [0.9, 0.999],
    off under 100 steps; other methods: off (bench_semi CIFAR_SUPERVISED)."""
    if facts.kind != "semi-supervised":
        return Resolved(0.0, "off: the EMA is the semi-supervised recipes' (bench_semi)")
    if not steps or steps < 100:
        return Resolved(0.0, f"off: {steps or 'unknown'} steps is too few to average")
    decay = round(min(0.999, max(0.9, 1 - 10 / steps)), 4)
    return Resolved(decay, f"1 - 10/steps ({steps} steps) in [0.9, 0.999]")


def _given(value: Any) -> Resolved:
    return Resolved(value, "given", given=True)


def step_images(facts: Facts, batch: int, mu: float) -> int:
    """Images through the backbone in one step (semi-supervised: labeled + two views of the
    unlabeled batch; pretraining: two views; supervised: the labeled batch)."""
    if facts.kind == "semi-supervised":
        return batch + 2 * round(batch * mu)
    return 2 * batch if facts.kind == "self-supervised" else batch


def _choose_backbone(
    facts: Facts, given: dict[str, Any], batch: int, probe: Probe | None, side: int
) -> tuple[Resolved, Facts]:
    """The backbone (given, or from the image size and the device's speed: fastnet, stepped
    down to fastnet-s and then the convnet while the budget buys fewer steps than the
    larger one wants, STEP_DOWN) and the facts with the probe's step time at the given (or
    FixMatch's) unlabeled ratio, on images of ``side`` px (the method's views)."""
    res = _given(given["backbone"]) if "backbone" in given else backbone_rule(facts)
    if facts.budget.kind != "seconds" or probe is None:
        return res, facts
    n = step_images(facts, batch, float(given.get("train.unlabeled_batch_ratio", 7.0)))
    facts = replace(facts, step_seconds=probe(res.value, n, side) / PROBE_SHARE)
    why: list[str] = []
    while not res.given and res.value in STEP_DOWN:
        smaller, want = STEP_DOWN[res.value]
        if facts.kind == "semi-supervised":
            want = SEMI_WANTS.get(res.value, want)
        steps = steps_bought(facts, batch, 7.0) or 0
        if steps >= want:
            break
        why.append(f"{res.value} buys {steps} steps (< {want})")
        res = Resolved(smaller, f"{', '.join(why)}: {smaller}")
        facts = replace(facts, step_seconds=probe(smaller, n, side) / PROBE_SHARE)
    return res, facts


MethodRules = Callable[[Facts], dict[str, Resolved]]


def generic_rules(
    facts: Facts,
    given: dict[str, Any],
    probe: Probe | None = None,
    method_rules: MethodRules | None = None,
    side: int | None = None,
) -> tuple[dict[str, Resolved], Facts]:
    """The loop's settings (``backbone`` and ``train.*``) from the facts, the method's
    recipe (``method_rules``, e.g. ``Config.train_rules``) over the generic rules; a name
    in ``given`` keeps its value; ``side``: the px of the images a step puts through the
    backbone (default: the image size). Returns the facts with steps, batch and backbone."""
    out: dict[str, Resolved] = {}
    recipe = method_rules or (lambda f: {})

    def pick(name: str, rule: Callable[[], Resolved]) -> Any:
        out[name] = _given(given[name]) if name in given else recipe(facts).get(name) or rule()
        return out[name].value

    optimizer = pick("train.optimizer", lambda: optimizer_rule(facts))
    batch = pick("train.batch_size", lambda: batch_rule(facts))
    side = side or facts.image_size
    out["backbone"], facts = _choose_backbone(facts, given, batch, probe, side)
    mu = float(given.get("train.unlabeled_batch_ratio", 7.0))
    if facts.kind == "semi-supervised":
        mu = pick("train.unlabeled_batch_ratio", lambda: mu_rule(facts, batch))
        if facts.step_seconds and "train.unlabeled_batch_ratio" not in given:
            facts = replace(facts, step_seconds=facts.step_seconds * (1 + 2 * mu) / 15)
    check_budget(facts)
    steps = steps_bought(facts, batch, mu)
    facts = replace(facts, steps=steps, batch=batch, backbone=out["backbone"].value)
    pick("train.lr", lambda: lr_rule(optimizer, batch, facts.kind, facts.backbone))
    pick("train.warmup", lambda: warmup_rule(steps))
    pick("train.ema", lambda: ema_rule(facts, steps))
    for name, r in recipe(facts).items():  # the rest of the method's recipe
        out.setdefault(name, _given(given[name]) if name in given else r)
    out["schedule"] = Resolved(
        steps or "budget", "the cosine ends with the budget (a time budget: re-estimated)"
    )
    return out, facts


def given_settings(cfg: Any) -> dict[str, Any]:
    """The settings of a RunConfig the user gave (set explicitly, not left at a default),
    by resolved name: ``backbone``, ``train.X``, ``method.X``."""
    given: dict[str, Any] = {}
    if "backbone" in cfg.model_fields_set:
        given["backbone"] = cfg.backbone
    for name in cfg.train.model_fields_set:
        given[f"train.{name}"] = getattr(cfg.train, name)
    for name, value in cfg.method_kwargs.items():
        given[f"method.{name}"] = value
    return given


def resolve_settings(
    cfg: Any,
    facts: Facts,
    config_cls: Any,
    *,
    probe: Probe | None = None,
    feature_dim: Callable[[str], int] | None = None,
    reuse: dict[str, Any] | None = None,
    fixed: dict[str, Resolved] | None = None,
) -> tuple[Any, Resolution]:
    """``cfg`` (a RunConfig) with every setting it leaves out derived from ``facts``, and
    the record of each value and its rule. ``config_cls``: the method's config class (its
    ``train_rules`` and ``resolve``); ``probe``: times a step of a backbone on n images
    (wall-clock budgets only); ``feature_dim``: a backbone's feature size; ``reuse``:
    derived values recorded by an earlier start of this run (a resumed run keeps them);
    ``fixed``: values the run's inputs decide (the backbone of the weights it starts from)."""
    user = given_settings(cfg)
    fixed = {k: v for k, v in (fixed or {}).items() if k not in user}
    given = {**(reuse or {}), **{k: v.value for k, v in fixed.items()}, **user}
    check_facts(facts)
    # the probe times the method's views; a given augment (its size unread) at image size
    side = facts.image_size if "method.augment" in given else config_cls.view_side(facts)
    values, facts = generic_rules(facts, given, probe, config_cls.train_rules, side)
    if feature_dim is not None:
        facts = replace(facts, feature_dim=feature_dim(values["backbone"].value))
    for name, r in config_cls.resolve(facts).items():
        key = f"method.{name}"
        values[key] = _given(given[key]) if key in given else r
    for name in given:  # given settings the rules do not cover are kept as they are
        values.setdefault(name, _given(given[name]))
    values.update(scaled(cfg, values, set(reuse or ())))
    values.update({k: v for k, v in fixed.items() if k in values})
    if reuse:
        values = {
            k: Resolved(v.value, "reused from the run's first start", False)
            if k in reuse and k not in user
            else v
            for k, v in values.items()
        }
    return apply_resolution(cfg, values), Resolution(values, facts)


def scaled(cfg: Any, values: dict[str, Resolved], reused: set[str]) -> dict[str, Resolved]:
    """``train.scale``'s factors applied to the lr and weight decay the run would use (a
    tuning trial's); a value reused from the run's first start is already scaled."""
    out: dict[str, Resolved] = {}
    for name, f in dict(cfg.train.scale).items():
        key = f"train.{name}"
        if key in reused:
            continue
        base = values.get(key)
        if base is None:  # not a rule's: the resolved optimiser's default
            train = cfg.train.model_copy(update={"optimizer": values["train.optimizer"].value})
            v = train.resolved_lr() if name == "lr" else train.resolved_weight_decay()
            base = Resolved(v, f"the {train.optimizer} default")
        value = float(f"{base.value * f:.6g}")
        out[key] = Resolved(value, f"{base.rule}, x {f:g} (train.scale)")
    return out


def apply_resolution(cfg: Any, values: dict[str, Resolved]) -> Any:
    """``cfg`` with the derived values set (given ones are already there)."""
    derived = {k: v.value for k, v in values.items() if not v.given}
    train = {k[6:]: v for k, v in derived.items() if k.startswith("train.")}
    method = {k[7:]: v for k, v in derived.items() if k.startswith("method.")}
    update: dict[str, Any] = {
        "train": type(cfg.train).model_validate({**cfg.train.model_dump(), **train}),
        "method_kwargs": {**cfg.method_kwargs, **method},
    }
    if "backbone" in derived:
        update["backbone"] = derived["backbone"]
    return cfg.model_copy(update=update)


def check_budget(facts: Facts) -> None:
    """A wall-clock budget shorter than one step (as the speed probe measured it)."""
    sec = facts.step_seconds
    if facts.budget.kind == "seconds" and sec and facts.budget.amount < sec:
        raise ConfigError(
            f"train.budget {facts.budget} is less than one training step here (about "
            f"{sec:.2f}s each, measured on {facts.device}); give a longer budget"
        )


def resolution_table(res: Resolution, width: int = 100) -> list[str]:
    """The resolved settings as a few short lines (derived first, then given)."""
    lines = []
    for given in (False, True):
        items = [(k, v) for k, v in res.values.items() if v.given == given]
        if not items:
            continue
        head = "given:   " if given else "derived: "
        parts = [f"{k.removeprefix('train.')}={_short(v.value)}" for k, v in items]
        line = head
        for p in parts:
            if len(line) + len(p) + 2 > width and line.strip() != head.strip():
                lines.append(line.rstrip(", "))
                line = " " * len(head)
            line += p + ", "
        lines.append(line.rstrip(", "))
    return lines


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(str(x) for x in v) + "]"
    return str(v)
