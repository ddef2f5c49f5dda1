"""A suite file, loaded and validated once (every error names the key, the value and what is allowed), and the one
place a suite and a variant become a run's settings.

Configs stay plain data — they come from YAML, are written to ``suite.json`` and ``config.yaml`` and go to W&B as
they are — and are typed with ``TypedDict`` (``SuiteConfig``, ``VariantConfig``, ``RunSpec``) so a reader sees
their fields without a conversion layer between the file and the code.
"""

from __future__ import annotations

import argparse
import inspect
from dataclasses import fields
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import pytorch_lightning as pl
import yaml

from ae_lightning.callbacks import CHECKPOINT_EVERY_N_STEPS
from ae_lightning.data import ImageDataModule, Noise
from ae_lightning.devices import parse_device
from ae_lightning.errors import ConfigError
from ae_lightning.evaluation.anomaly import SCORES as ANOMALY_SCORES
from ae_lightning.evaluation.battery import EvaluationSettings
from ae_lightning.limits import check_trainer_limits
from ae_lightning.variants import VARIANTS, AutoencoderBase

SUITE_KEYS = {
    "name",
    "description",
    "data",
    "trainer",
    "seeds",
    "evaluation",
    "variants",
    "wandb",
    "checkpoint_every_n_steps",
    "tuning",  # read by `ae-lightning tune` (suite/search.py)
    "one_class",  # the one-class protocol: each listed class in turn is the normal class (check_one_class)
}


# A variant: {model: NAME, args: {…}} (short), {class_path: …, init_args: {…}} (as LightningCLI writes a model), or
# {config: FILE} (a model config as `ae-lightning fit --config` takes; init_args beside it override its values).
VARIANT_KEYS = {"name", "model", "args", "class_path", "init_args", "config", "data", "trainer", "search", "objective"}


OVERRIDE_SECTIONS = ("data", "trainer", "evaluation", "wandb")  # compare --data.root DIR, --trainer.max_epochs 5…


WANDB_KEYS = {"mode", "project", "entity", "image_every_n_epochs"}


WANDB_MODES = ("auto", "online", "offline", "disabled")


TRAINER_KEYS = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self", "logger", "callbacks"}


EVALUATION_KEYS = {f.name for f in fields(EvaluationSettings)}


class VariantConfig(TypedDict):
    """One entry of a suite's ``variants``, as ``load_suite`` leaves it (any of the three ways a suite may write a
    model becomes ``model`` + ``args``)."""

    name: str
    model: str  # a key of ae_lightning.variants.VARIANTS
    args: dict[str, Any]  # the variant's init arguments
    data: NotRequired[dict[str, Any]]  # its own data settings, over the suite's (see variant_data)
    trainer: NotRequired[dict[str, Any]]  # its own trainer settings, over the suite's
    search: NotRequired[dict[str, Any]]  # tune: its search space
    objective: NotRequired[str | dict[str, str]]  # tune: its own objective; also what picks its checkpoint


class SuiteConfig(TypedDict):
    """A suite as ``load_suite`` returns it: overrides applied, every section present and checked."""

    name: str
    data: dict[str, Any]  # ImageDataModule's arguments
    trainer: dict[str, Any]  # pl.Trainer's arguments
    seeds: list[int]
    evaluation: dict[str, Any]  # EvaluationSettings' fields; noise always set
    wandb: dict[str, Any]  # mode, project, entity, image_every_n_epochs
    variants: list[VariantConfig]
    tuning: NotRequired[dict[str, Any]]  # read by search.load_tuning
    checkpoint_every_n_steps: NotRequired[int]
    one_class: NotRequired[list[int]]  # each class in turn the only normal class: a run per class, variant, seed


class RunSpec(TypedDict):
    """What one run (or one tuning trial) trains: ``run_spec``'s result. Its training part becomes
    ``RUN_DIR/config.yaml`` (``run.run_config``), the file ``ae-lightning fit --config`` takes; the rest
    ``RUN_DIR/run.json`` (``run.run_info``)."""

    suite_id: str
    suite_name: str
    variant: str
    model: str
    model_args: dict[str, Any]
    seed: int
    data: dict[str, Any]
    trainer: dict[str, Any]
    wandb: dict[str, Any]
    checkpoint_every_n_steps: int
    select_on: dict[str, str]  # {metric, direction}: the validation metric that picks the judged checkpoint
    normal_class: NotRequired[int]  # the one-class protocol: this run's normal class (data.normal_classes [it])
    evaluation: NotRequired[dict[str, Any]]  # suite runs: what the battery uses (trials have none)


def model_knobs(model: str) -> set[str]:
    """The init arguments a variant takes (its own and the shared ones of AutoencoderBase)."""
    knobs = set()
    for cls in (VARIANTS[model], AutoencoderBase):
        knobs |= {n for n, p in inspect.signature(cls.__init__).parameters.items() if p.kind == p.POSITIONAL_OR_KEYWORD}
    return knobs - {"self", "input_shape"}


def check_keys(section: dict[str, Any], allowed: set[str], where: str) -> None:
    if not isinstance(section, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(section).__name__}: {section!r}")
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: {sorted(allowed)}")


def model_of(variant: dict[str, Any], suite_dir: Path, where: str) -> tuple[str, dict[str, Any]]:
    """(variant class name, its arguments) from any of the three ways a suite may write a variant."""
    forms = [form for form in ("model", "class_path", "config") if form in variant]
    if len(forms) != 1:
        raise ConfigError(f"{where}: give exactly one of 'model', 'class_path' or 'config' (got {forms or 'none'})")
    if forms == ["model"]:
        if "init_args" in variant:
            raise ConfigError(f"{where}: 'init_args' goes with 'class_path' or 'config'; with 'model' use 'args'")
        return variant["model"], dict(variant.get("args") or {})
    if "args" in variant:
        raise ConfigError(f"{where}: 'args' goes with 'model'; with '{forms[0]}' use 'init_args'")
    class_path, init_args = variant.get("class_path"), {}
    if forms == ["config"]:
        file = Path(variant["config"])
        file = file if file.is_file() or file.is_absolute() else suite_dir / file
        if not file.is_file():
            raise ConfigError(f"{where}: config={variant['config']!r}: no such file (relative to . or {suite_dir})")
        section = (yaml.safe_load(file.read_text()) or {}).get("model")
        if not isinstance(section, dict) or "class_path" not in section:
            raise ConfigError(f"{where}: {file} has no 'model: {{class_path: …, init_args: …}}' section")
        class_path, init_args = section["class_path"], dict(section.get("init_args") or {})
    name = str(class_path).rsplit(".", 1)[-1]
    if name not in VARIANTS:
        raise ConfigError(f"{where}: class_path={class_path!r} is not a variant; allowed: {sorted(VARIANTS)}")
    return name, {**init_args, **(variant.get("init_args") or {})}


def load_suite(path: Path, overrides: argparse.Namespace) -> SuiteConfig:
    """Read, override and validate a suite file; every error names the key, the value and what is allowed."""
    if not path.is_file():
        raise ConfigError(f"suite file {str(path)!r} does not exist")
    try:
        suite = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"suite file {path} is not valid YAML: {err}") from None
    check_keys(suite, SUITE_KEYS, f"suite {path}")
    suite.setdefault("name", path.stem)
    suite["data"] = dict(suite.get("data") or {})
    suite["trainer"] = dict(suite.get("trainer") or {})
    suite["evaluation"] = dict(suite.get("evaluation") or {})
    suite["wandb"] = {"mode": "auto", "project": "ae-lightning", **(suite.get("wandb") or {})}
    if overrides.epochs is not None:
        suite["trainer"]["max_epochs"] = overrides.epochs
    if overrides.data_root is not None:
        suite["data"]["root"] = overrides.data_root
    if overrides.seeds is not None:
        suite["seeds"] = overrides.seeds
    if overrides.wandb is not None:
        suite["wandb"]["mode"] = overrides.wandb
    for key, value in getattr(overrides, "dotted", {}).items():  # --trainer.max_epochs 5 …, as in `fit`
        *parents, name = key.split(".")
        target = suite
        for parent in parents:  # --data.noise.level 0.5 reaches into data.noise
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                raise ConfigError(f"--{key}: {parent!r} is not a mapping in this suite")
        target[name] = value
    suite.setdefault("seeds", [0])
    if (
        not isinstance(suite["seeds"], list)
        or not suite["seeds"]
        or not all(isinstance(s, int) for s in suite["seeds"])
    ):
        raise ConfigError(f"suite {path}: seeds={suite['seeds']!r} must be a non-empty list of integers")
    check_keys(suite["trainer"], TRAINER_KEYS, f"suite {path}: trainer")
    check_trainer_limits(suite["trainer"], f"suite {path}: ")
    check_keys(suite["evaluation"], EVALUATION_KEYS, f"suite {path}: evaluation")
    check_keys(suite["wandb"], WANDB_KEYS, f"suite {path}: wandb")
    if suite["wandb"]["mode"] not in WANDB_MODES:
        raise ConfigError(f"wandb.mode={suite['wandb']['mode']!r}; allowed: {list(WANDB_MODES)}")
    variants = suite.get("variants")
    if not variants or not isinstance(variants, list):
        raise ConfigError(
            f"suite {path} has no variants: add a list under 'variants', each with a 'model' "
            f"(one of {sorted(VARIANTS)})"
        )
    names = set()
    for number, variant in enumerate(variants):
        where = f"suite {path}: variants[{number}]"
        check_keys(variant, VARIANT_KEYS, where)
        model, model_args = model_of(variant, path.parent, where)
        if model not in VARIANTS:
            raise ConfigError(f"{where}: model={model!r} is not a variant; allowed: {sorted(VARIANTS)}")
        variant.update(model=model, args=model_args)
        for form in ("class_path", "init_args", "config"):
            variant.pop(form, None)
        variant.setdefault("name", variant["model"])
        if variant["name"] in names:
            raise ConfigError(f"{where}: name {variant['name']!r} is used twice; give each variant its own name")
        names.add(variant["name"])
        check_keys(variant.get("trainer") or {}, TRAINER_KEYS, f"{where}.trainer")
        check_trainer_limits({**suite["trainer"], **(variant.get("trainer") or {})}, f"{where} ({variant['name']}): ")
        unknown = sorted(set(variant.get("args") or {}) - model_knobs(variant["model"]))
        if unknown:
            raise ConfigError(
                f"{where} ({variant['name']}): {unknown[0]!r} is not an argument of {variant['model']}; allowed: "
                f"{sorted(model_knobs(variant['model']))}"
            )
        try:
            selection_objective(variant.get("objective"))
        except ConfigError as err:
            raise ConfigError(f"{where} ({variant['name']}): {err}") from None
        data = variant_data(suite, variant)
        try:  # build the data module and the model once here, so a typo fails now, not hours into the suite
            # a one-class suite's runs get their normal class later; any class stands in for it here
            one_class = {"normal_classes": [0]} if "one_class" in suite and "normal_classes" not in data else {}
            datamodule = ImageDataModule(**{**data, **one_class})
            VARIANTS[variant["model"]](input_shape=datamodule.image_shape, **(variant.get("args") or {}))
        except (ConfigError, TypeError) as err:  # TypeError: an argument the variant does not take
            raise ConfigError(f"{where} ({variant['name']}): {err}") from None
    if overrides.only:
        unknown = sorted(set(overrides.only) - names)
        if unknown:
            raise ConfigError(f"--only {unknown[0]!r} is not a variant of this suite; allowed: {sorted(names)}")
        suite["variants"] = [v for v in variants if v["name"] in overrides.only]
    noise = suite["evaluation"].get("noise") or suite["data"].get("noise") or {"kind": "gaussian", "level": 0.3}
    Noise(**noise)
    unknown_scores = sorted(set(suite["evaluation"].get("anomaly_scores") or ()) - set(ANOMALY_SCORES))
    if unknown_scores:
        raise ConfigError(
            f"evaluation.anomaly_scores: {unknown_scores[0]!r} is not a score; allowed: {list(ANOMALY_SCORES)}"
        )
    fpr = suite["evaluation"].get("anomaly_fpr", 0.01)
    if isinstance(fpr, bool) or not isinstance(fpr, (int, float)) or not 0 < fpr < 1:
        raise ConfigError(
            f"evaluation.anomaly_fpr={fpr!r} is the target false-positive rate of the thresholds; allowed: a number "
            "in (0, 1), e.g. 0.01"
        )
    if suite["evaluation"].get("device") is not None:
        parse_device(suite["evaluation"]["device"], "evaluation.device")
    suite["evaluation"]["noise"] = noise
    if "one_class" in suite:
        check_one_class(suite, path)
    return suite


def check_one_class(suite: SuiteConfig, path: Path) -> None:
    """The one-class protocol (Ruff et al. 2018): ``one_class: [c, …]`` runs every variant and seed once per listed
    class with ``data.normal_classes: [c]``. Its classes must be distinct labels the (labelled) data has, and no
    ``normal_classes`` of its own may contradict it."""
    classes = suite["one_class"]
    if (
        not isinstance(classes, list)
        or not classes
        or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise ConfigError(f"suite {path}: one_class={classes!r} must be a non-empty list of distinct class labels")
    for variant in suite["variants"]:
        data = variant_data(suite, variant)
        if data.get("normal_classes") is not None:
            raise ConfigError(
                f"suite {path}: one_class={classes} sets each run's normal class; {variant['name']} also has "
                f"data.normal_classes={data['normal_classes']}: remove one of them"
            )
        if data.get("name") == "mvtec":
            raise ConfigError(
                f"suite {path}: one_class={classes} on data.name mvtec: an MVTec AD folder has one normal class "
                "(train/good); give one category per suite instead"
            )
        # built-in data: known; a folder or file: read (and cached)
        count = ImageDataModule(**{**data, "normal_classes": [classes[0]]}).num_classes
        if count == 0:
            raise ConfigError(
                f"suite {path}: one_class={classes} needs labelled data; {data.get('name')} at {data.get('root')} "
                "has no labels"
            )
        missing = [c for c in classes if c >= count]
        if missing:
            raise ConfigError(
                f"suite {path}: one_class: class {missing[0]} is not in the data; its classes are 0 to {count - 1}"
            )


def variant_data(suite: SuiteConfig, variant: VariantConfig) -> dict[str, Any]:
    """THE suite → variant data merge: the suite's data settings with the variant's own on top (a top-level key of
    the variant's replaces the suite's: ``data: {noise: …}`` is the variant's whole noise)."""
    return {**suite["data"], **(variant.get("data") or {})}


def with_variant_data(suite: SuiteConfig) -> SuiteConfig:
    """The suite with every variant's data complete (``variant_data``): how the report, which knows no suite
    module, reads each variant's data settings."""
    return {**suite, "variants": [{**v, "data": variant_data(suite, v)} for v in suite["variants"]]}


# validation metrics where higher is better: a metric named without a direction is maximised, and "minimize" on one
# is refused (it would keep the worst checkpoint); every other val/ metric is an error or a loss
MAXIMIZED_METRICS = {"val/probe_accuracy"}


def default_direction(metric: Any) -> str:
    return "maximize" if metric in MAXIMIZED_METRICS else "minimize"


def selection_objective(objective: Any) -> dict[str, str]:
    """``{metric, direction}`` of a variant's objective as a suite may write it (a metric name, or a mapping; the
    direction, when not given, is the metric's: maximise an accuracy, minimise a loss)."""
    if objective is None:
        return {"metric": "val/loss", "direction": "minimize"}
    if isinstance(objective, str):
        return {"metric": objective, "direction": default_direction(objective)}
    chosen = {"direction": default_direction(objective.get("metric")), **objective}
    if chosen["metric"] in MAXIMIZED_METRICS and chosen["direction"] != "maximize":
        raise ConfigError(
            f"objective {chosen['metric']} with direction {chosen['direction']!r}: higher is better there; use "
            "direction: maximize (or leave the direction out)"
        )
    return chosen


def run_spec(
    suite: SuiteConfig, suite_id: str, variant: VariantConfig, seed: int, normal_class: int | None = None
) -> RunSpec:
    """What one run of ``variant`` trains (its spec.json): the suite's sections with the variant's on top; under
    the one-class protocol, with ``normal_class`` as its only normal class."""
    spec: RunSpec = {
        "suite_id": suite_id,
        "suite_name": suite["name"],
        "variant": variant["name"],
        "model": variant["model"],
        "model_args": variant.get("args") or {},
        "seed": seed,
        "data": variant_data(suite, variant),
        "trainer": {"accelerator": "auto", "devices": 1, **suite["trainer"], **(variant.get("trainer") or {})},
        "wandb": suite["wandb"],
        "checkpoint_every_n_steps": suite.get("checkpoint_every_n_steps", CHECKPOINT_EVERY_N_STEPS),
        # the validation metric that picks the checkpoint the battery judges: the variant's objective where it has
        # one (a tuned variant: the objective its trials were valued on), else val/loss
        "select_on": selection_objective(variant.get("objective")),
    }
    if normal_class is not None:
        spec["data"]["normal_classes"] = [normal_class]
        spec["normal_class"] = normal_class
    return spec


def protocol_classes(suite: SuiteConfig) -> list[int | None]:
    """The normal class of each block of runs: the one-class protocol's classes, or ``[None]`` (one block)."""
    return list(suite.get("one_class") or [None])


def suite_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options ``compare`` and ``tune`` share: what to run, where, and on what."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("suite", type=Path, help="suite YAML file, e.g. experiments/quick.yaml")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: results/<suite name>)")
    parser.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs (= --trainer.max_epochs)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="override the suite's seeds")
    parser.add_argument("--data-root", default=None, help="override data.root (= --data.root)")
    parser.add_argument("--only", nargs="+", default=None, help="run only these variants (by name)")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once on CPU (default 1)")
    parser.add_argument("--ddp", action="store_true", help="with GPUs: each run on all GPUs (DDP), one after another")
    parser.add_argument(
        "--runs-per-gpu",
        type=int,
        default=1,
        help="runs sharing each GPU at once (default 1): small models (MNIST MLPs) use a fraction of a GPU",
    )
    parser.add_argument("--wandb", choices=WANDB_MODES, default=None, help="W&B mode (default: the suite's, auto)")
    parser.add_argument("--report-only", action="store_true", help="write summary and report from finished runs")
    parser.epilog = (
        "Any suite key can be overridden with the dotted keys of `ae-lightning fit`: --data.KEY VALUE, "
        "--trainer.KEY VALUE, --evaluation.KEY VALUE, --wandb.KEY VALUE (values read as YAML)."
    )
    return parser


def parse_suite_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse and check the shared options; any other ``--section.key value`` is a dotted suite override."""
    args, rest = parser.parse_known_args(argv)
    args.dotted = parse_dotted(rest, parser.prog.rsplit(" ", 1)[-1])
    if args.parallel < 1:
        raise ConfigError(f"--parallel {args.parallel}: must be >= 1")
    if args.runs_per_gpu < 1:
        raise ConfigError(f"--runs-per-gpu {args.runs_per_gpu}: must be >= 1")
    if args.ddp and args.runs_per_gpu > 1:
        raise ConfigError(
            f"--runs-per-gpu {args.runs_per_gpu} with --ddp: a DDP run takes every GPU; use one or the other"
        )
    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs {args.epochs}: must be >= 1")
    return args


def parse_dotted(rest: list[str], command: str = "compare") -> dict[str, Any]:
    """``--trainer.max_epochs 5 --data.root=/data`` → ``{"trainer.max_epochs": 5, "data.root": "/data"}``
    (``tune`` also takes ``--tuning.KEY``: a reduced budget without editing the suite)."""
    sections = OVERRIDE_SECTIONS + (("tuning",) if command == "tune" else ())
    dotted, items = {}, list(rest)
    while items:
        item = items.pop(0)
        key, separator, value = item[2:].partition("=") if item.startswith("--") else ("", "", "")
        if key.split(".", 1)[0] not in sections or "." not in key:
            allowed = ", ".join(f"--{section}.KEY" for section in sections)
            raise ConfigError(f"unrecognized argument {item!r}; {command} takes its own options and {allowed}")
        if not separator:
            if not items:
                raise ConfigError(f"{item} needs a value")
            value = items.pop(0)
        dotted[key] = yaml.safe_load(value)
    return dotted
