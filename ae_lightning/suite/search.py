"""The ``tuning`` section of a suite and each variant's ``search`` space, checked once: Optuna distributions for
every knob (both ends of each range built into a variant before anything trains), objectives, the budget, and the
equal-compute rule (see ``tune.py`` for what runs)."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from ae_lightning.data import ImageDataModule
from ae_lightning.errors import ConfigError
from ae_lightning.suite.config import MAXIMIZED_METRICS, check_keys, default_direction, model_knobs, variant_data
from ae_lightning.variants import VARIANTS

TUNING_KEYS = {
    "budget_epochs",
    "epochs",
    "objective",
    "sampler",
    "startup_trials",
    "pruner",
    "pruner_warmup_epochs",
    "pruner_startup_trials",
    "seed",
    "search",
    "stale_after_minutes",
}


# What a variant may not change in a tuning suite: the compute of a trial (unless it is a search knob).
COMPUTE_DATA_KEYS = ("batch_size", "val_size")


DIRECTIONS = ("minimize", "maximize")


def float_or_int(kind: type) -> Callable[[str, dict[str, Any]], BaseDistribution]:
    def make(where: str, spec: dict[str, Any]) -> BaseDistribution:
        check_keys(spec, {"kind", "low", "high", "log"}, where)
        low, high, log = spec.get("low"), spec.get("high"), bool(spec.get("log", False))
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
            raise ConfigError(f"{where}: low={low!r} and high={high!r} must both be numbers")
        if not low < high:
            raise ConfigError(f"{where}: the range low={low} .. high={high} is empty or inverted; give low < high")
        if log and low <= 0:
            raise ConfigError(f"{where}: log=true needs low > 0 (got low={low})")
        if kind is int:
            if low != int(low) or high != int(high):
                raise ConfigError(f"{where}: an int range needs whole bounds (got {low} .. {high})")
            return IntDistribution(int(low), int(high), log=log)
        return FloatDistribution(float(low), float(high), log=log)

    return make


def categorical(where: str, spec: dict[str, Any]) -> BaseDistribution:
    check_keys(spec, {"kind", "choices"}, where)
    choices = spec.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ConfigError(f"{where}: choices={choices!r} must be a non-empty list")
    return CategoricalDistribution(choices)


DISTRIBUTIONS: dict[str, Callable[[str, dict[str, Any]], BaseDistribution]] = {
    "float": float_or_int(float),
    "int": float_or_int(int),
    "categorical": categorical,
}


SAMPLERS: dict[str, Callable[[int, int], optuna.samplers.BaseSampler]] = {  # (seed, startup trials) → sampler
    "tpe": lambda seed, startup: optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup),
    "random": lambda seed, startup: optuna.samplers.RandomSampler(seed=seed),
}


PRUNERS: dict[str, Callable[[dict], optuna.pruners.BasePruner]] = {
    # Trials compare at the same epoch. The first trials always run to the end, and no trial is judged in its
    # first epochs (a slower learning rate must not lose for starting slowly).
    "median": lambda tuning: optuna.pruners.MedianPruner(
        n_startup_trials=tuning["pruner_startup_trials"], n_warmup_steps=tuning["pruner_warmup_epochs"]
    ),
    "none": lambda tuning: optuna.pruners.NopPruner(),
}


def default_startup_trials(budget_trials: int) -> int:
    """TPE's random start-up trials for a budget of ``budget_trials`` full trials: Optuna's 10 where the budget is
    large, a third of it where it is small (10 of 8 would be random search under TPE's name), at least 2."""
    return max(2, min(10, budget_trials // 3))


def distributions_of(search: Any, model: str, where: str) -> dict[str, BaseDistribution]:
    if search is None:
        return {}
    if not isinstance(search, dict):
        raise ConfigError(f"{where}: search must be a mapping of knob to range, got {search!r}")
    knobs, data_knobs = model_knobs(model), set(inspect.signature(ImageDataModule).parameters)
    distributions = {}
    for knob, spec in search.items():
        top = knob.split(".")[1] if knob.startswith("data.") and "." in knob else None
        if not (knob in knobs or top in data_knobs):
            raise ConfigError(
                f"{where}: {knob!r} is not a knob of {model}; allowed: its arguments {sorted(knobs)} or data.KEY "
                f"(one of {sorted(data_knobs)})"
            )
        if not isinstance(spec, dict) or spec.get("kind") not in DISTRIBUTIONS:
            kind = spec.get("kind") if isinstance(spec, dict) else spec
            raise ConfigError(f"{where}.{knob}: kind={kind!r} does not exist; allowed: {sorted(DISTRIBUTIONS)}")
        distributions[knob] = DISTRIBUTIONS[spec["kind"]](f"{where}.{knob}", spec)
    return distributions


def apply_params(variant: dict[str, Any], params: dict[str, Any], suite_data: dict[str, Any]) -> dict[str, Any]:
    """The variant with these knob values: model arguments into ``args``, ``data.a.b`` into its ``data`` (a
    mapping such as data.noise starts from the variant's, else the suite's, and changes only the tuned key)."""
    variant = copy.deepcopy(variant)
    for knob, value in params.items():
        if knob.startswith("data."):
            *parents, name = knob.split(".")[1:]
            target, base = variant.setdefault("data", {}), suite_data
            for parent in parents:
                base = base.get(parent) if isinstance(base, dict) else None
                target[parent] = {**(base or {}), **(target.get(parent) or {})}
                target = target[parent]
            target[name] = value
        else:
            variant.setdefault("args", {})[knob] = value
    return variant


def objective_of(objective: Any, where: str) -> dict[str, str]:
    if isinstance(objective, str):
        objective = {"metric": objective}
    check_keys(objective or {}, {"metric", "direction"}, where)
    objective = {"direction": default_direction((objective or {}).get("metric")), **(objective or {})}
    metric = objective.get("metric")
    if not isinstance(metric, str) or not metric.startswith("val/"):
        raise ConfigError(
            f"{where}.metric={metric!r}: tuning chooses on the validation split; give a val/ metric the runs log "
            "(val/mse, val/loss or a variant's val/<term>)"
        )
    if objective["direction"] not in DIRECTIONS:
        raise ConfigError(f"{where}.direction={objective['direction']!r}; allowed: {list(DIRECTIONS)}")
    if metric in MAXIMIZED_METRICS and objective["direction"] != "maximize":
        raise ConfigError(f"{where}: {metric} is higher-is-better; direction must be maximize (or left out)")
    return objective


def load_tuning(suite: dict[str, Any], path: Path) -> dict[str, Any]:
    """Check the suite's ``tuning`` section and every variant's ``search``; each error names the key, the bad value
    and what is allowed. Returns the settings with each variant's Optuna distributions."""
    section = suite.get("tuning")
    if not isinstance(section, dict):
        raise ConfigError(f"suite {path} has no 'tuning' section (trials, epochs, objective, search); see `tune -h`")
    if "trials" in section:
        epochs = section.get("epochs")
        hint = f" (trials x epochs = {section['trials'] * epochs})" if isinstance(epochs, int) else ""
        raise ConfigError(
            f"tuning.trials={section['trials']!r}: the budget is now compute, tuning.budget_epochs{hint}: trials run "
            "until their trained epochs reach it (pruned trials fund further trials)"
        )
    check_keys(section, TUNING_KEYS, f"suite {path}: tuning")
    tuning = {"sampler": "tpe", "pruner": "median", "seed": 0, "stale_after_minutes": 30, **section}
    for key in ("budget_epochs", "epochs"):
        value = tuning.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"tuning.{key}={value!r}: the budget must be an integer >= 1")
    if tuning["budget_epochs"] < tuning["epochs"]:
        raise ConfigError(
            f"tuning.budget_epochs={tuning['budget_epochs']} is less than one trial's epochs={tuning['epochs']}"
        )
    budget_trials = tuning["budget_epochs"] // tuning["epochs"]
    tuning.setdefault("startup_trials", default_startup_trials(budget_trials))
    tuning.setdefault("pruner_warmup_epochs", tuning["epochs"] // 3)
    tuning.setdefault("pruner_startup_trials", 2)
    for key in ("startup_trials", "pruner_warmup_epochs", "pruner_startup_trials"):
        value = tuning[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"tuning.{key}={value!r} must be an integer >= 0")
    tuning["objective"] = objective_of(tuning.get("objective"), "tuning.objective")
    if tuning["sampler"] not in SAMPLERS:
        raise ConfigError(f"tuning.sampler={tuning['sampler']!r}; allowed: {sorted(SAMPLERS)}")
    if tuning["pruner"] not in PRUNERS:
        raise ConfigError(f"tuning.pruner={tuning['pruner']!r}; allowed: {sorted(PRUNERS)}")
    if not (isinstance(tuning["stale_after_minutes"], (int, float)) and tuning["stale_after_minutes"] > 0):
        raise ConfigError(f"tuning.stale_after_minutes={tuning['stale_after_minutes']!r} must be > 0")
    tuning["spaces"], tuning["objectives"] = {}, {}
    for number, variant in enumerate(suite["variants"]):
        where = f"variants[{number}] ({variant['name']}).search"
        shared = distributions_of(tuning.get("search"), variant["model"], "tuning.search")
        space = {**shared, **distributions_of(variant.get("search"), variant["model"], where)}
        check_equal_compute(variant, space, f"variants[{number}] ({variant['name']})")
        for knob, distribution in space.items():  # both ends of each range must make a valid variant, now
            ends = (
                distribution.choices
                if isinstance(distribution, CategoricalDistribution)
                else (distribution.low, distribution.high)
            )
            for value in ends:
                candidate = apply_params(variant, {knob: value}, suite["data"])
                data = variant_data(suite, candidate)
                try:
                    datamodule = ImageDataModule(**data)
                    VARIANTS[variant["model"]](input_shape=datamodule.image_shape, **candidate.get("args", {}))
                except (ConfigError, TypeError, ValueError) as err:
                    raise ConfigError(f"{where}.{knob} = {value!r} (an end of its range) is not valid: {err}") from None
        tuning["spaces"][variant["name"]] = space
        objective = variant.get("objective")  # a variant may be judged on its own objective, e.g. a VAE's val/loss
        where = f"variants[{number}] ({variant['name']}).objective"
        tuning["objectives"][variant["name"]] = (
            tuning["objective"] if objective is None else objective_of(objective, where)
        )
    return tuning


def check_equal_compute(variant: dict[str, Any], space: dict[str, BaseDistribution], where: str) -> None:
    """A variant may not buy itself more (or less) compute per trial than the others: no trainer section of its
    own, no batch_size or val_size of its own, unless that key is one of its search knobs."""
    if variant.get("trainer"):
        key = sorted(variant["trainer"])[0]
        raise ConfigError(
            f"{where}.trainer.{key}={variant['trainer'][key]!r}: in a tuning suite every variant trains with the "
            "suite's trainer settings (equal compute); move it to the suite's trainer section"
        )
    for key in COMPUTE_DATA_KEYS:
        if key in (variant.get("data") or {}) and f"data.{key}" not in space:
            raise ConfigError(
                f"{where}.data.{key}={variant['data'][key]!r}: in a tuning suite it changes the compute of a trial; "
                f"set it in the suite's data section, or tune it (search: data.{key})"
            )
