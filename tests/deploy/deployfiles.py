"""Rendered manifests and the parsed Dockerfile, for the deployment tests."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
SCHEMAS = Path(__file__).with_name("schemas")
SPARK_COMPONENT = "../../components/spark"
# The oldest Kubernetes minor we claim: everything used is GA there (autoscaling/v2 1.23,
# policy/v1 1.21, seccompProfile 1.19, startupProbe 1.20, emptyDir sizeLimit 1.25).
OLDEST_KUBERNETES = "1.25.0"
WAVE = "argocd.argoproj.io/sync-wave"
HOOK = "argocd.argoproj.io/hook"
HOOK_DELETE_POLICY = "argocd.argoproj.io/hook-delete-policy"


def uses_spark(overlay: Path) -> bool:
    """Whether an overlay runs the ML job as a SparkApplication (manifests/components/spark)."""
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    return SPARK_COMPONENT in (kustomization.get("components") or [])


_ALL_OVERLAYS = sorted(path for path in (MANIFESTS / "overlays").iterdir() if path.is_dir())
# Overlays whose ML job is the Job, and those whose ML job is a SparkApplication.
OVERLAYS = [path.name for path in _ALL_OVERLAYS if not uses_spark(path)]
SPARK_OVERLAYS = [path.name for path in _ALL_OVERLAYS if uses_spark(path)]
DOCKERFILE = REPO / "containers" / "Dockerfile"


def load_script(path: Path) -> ModuleType:
    """A script of the checkout (not a package module), imported from its file."""
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def venv_tool(name: str) -> str:
    """A command installed next to the running Python (the project's virtualenv), or on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is not installed (it comes with the dev extra / the machine image)"
    return found


def render(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIRECTORY`, parsed."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render the manifests"
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


def strict(schema: Any) -> Any:
    """The schema with every object that lists its properties refusing any other field.

    The API server prunes unknown fields of a custom resource without a word, so a misspelled
    `selfHeal` would silently turn self-healing off; this makes such a field an error here.
    """
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    tightened = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        tightened["additionalProperties"] = False
    return tightened


def crd_validator(path: Path, version: str) -> jsonschema.protocols.Validator:
    """A validator for objects of the CustomResourceDefinition in ``path`` at ``version``, from
    its openAPIV3Schema made :func:`strict`."""
    crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = strict(served["schema"]["openAPIV3Schema"])
    validator_class = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft7Validator
    )
    # Not check_schema(): it also asserts the "regex" format of every pattern, and CRD patterns
    # are Go (RE2) expressions Python's re may refuse, e.g. the Prometheus Operator's
    # "^(?i)(abort|warn)?$".
    problems = [
        error.message for error in validator_class(validator_class.META_SCHEMA).iter_errors(schema)
    ]
    assert problems == [], f"{path} does not hold a valid schema: {problems[:3]}"
    return validator_class(schema)


def schema_errors(validator: jsonschema.protocols.Validator, document: dict[str, Any]) -> list[str]:
    """Every schema violation in ``document``, one line each."""
    return [
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


class Rendered:
    """The objects one kustomize directory renders to, looked up by kind."""

    def __init__(self, directory: Path) -> None:
        self.name = directory.name
        self.objects = render(directory)

    def one(self, kind: str) -> dict[str, Any]:
        """The single object of `kind`."""
        (obj,) = [obj for obj in self.objects if obj["kind"] == kind]
        return obj

    def pod_spec(self, kind: str) -> dict[str, Any]:
        """The pod template spec of the single Deployment or Job."""
        spec: dict[str, Any] = self.one(kind)["spec"]["template"]["spec"]
        return spec

    def container(self, kind: str) -> dict[str, Any]:
        """The single container of the Deployment's or Job's pods."""
        (container,) = self.pod_spec(kind)["containers"]
        return dict(container)


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction with its arguments as written."""

    keyword: str
    arguments: str


@dataclass(frozen=True)
class Stage:
    """One FROM ... AS name stage."""

    name: str
    base: str
    instructions: tuple[Instruction, ...]


class Dockerfile:
    """A parsed Dockerfile: stages, and what each target inherits through its FROM chain."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stages: dict[str, Stage] = {}
        # ARGs declared before the first FROM: usable in FROM lines.
        self.global_args: dict[str, str | None] = {}
        logical: list[str] = []
        pending = ""
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            logical.append(pending + stripped)
            pending = ""
        current: tuple[str, str] | None = None
        body: list[Instruction] = []
        for text in logical:
            keyword, _, arguments = text.partition(" ")
            keyword = keyword.upper()
            if keyword == "FROM":
                if current:
                    self.stages[current[0]] = Stage(current[0], current[1], tuple(body))
                base, _, name = arguments.partition(" AS ")
                current, body = (name.strip(), base.strip()), []
            elif current:
                body.append(Instruction(keyword, arguments.strip()))
            elif keyword == "ARG":
                name, equals, default = arguments.strip().partition("=")
                self.global_args[name] = shlex.split(default)[0] if equals and default else None
        assert current, f"{path} has no FROM"
        self.stages[current[0]] = Stage(current[0], current[1], tuple(body))

    def args(self, stage: str) -> dict[str, str | None]:
        """The ARGs a stage declares, with their defaults (None: no default; a global's value
        when it redeclares a global ARG without one)."""
        declared: dict[str, str | None] = {}
        for arguments in (
            i.arguments for i in self.stages[stage].instructions if i.keyword == "ARG"
        ):
            name, equals, default = arguments.partition("=")
            value = (shlex.split(default) or [""])[0] if equals else self.global_args.get(name)
            declared[name] = value
        return declared

    def substitute(self, text: str, values: dict[str, str | None]) -> str:
        """``text`` with each ``${NAME}`` replaced by its value; a missing one is an error."""

        def value(match: re.Match[str]) -> str:
            found = values.get(match[1])
            assert found is not None, f"{match[0]} has no default in {self.path.name}"
            return found

        return re.sub(r"\$\{(\w+)\}", value, text)

    def base(self, stage: str) -> str:
        """What a stage is built FROM, with the global ARGs' defaults put in."""
        return self.substitute(self.stages[stage].base, self.global_args)

    def chain(self, target: str) -> list[Stage]:
        """The stages `target` is built on, outermost first, ending with `target`."""
        stages = [self.stages[target]]
        while stages[0].base in self.stages:
            stages.insert(0, self.stages[stages[0].base])
        return stages

    def instructions(self, target: str, keyword: str) -> list[str]:
        """Arguments of every `keyword` instruction that applies to `target`, in order."""
        return [
            instruction.arguments
            for stage in self.chain(target)
            for instruction in stage.instructions
            if instruction.keyword == keyword
        ]

    def pairs(self, target: str, keyword: str) -> dict[str, str]:
        """The NAME=VALUE pairs of every `keyword` (ENV, LABEL) `target` has, later ones winning,
        as written (ARGs not put in)."""
        pairs: dict[str, str] = {}
        for arguments in self.instructions(target, keyword):
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                pairs[name] = value
        return pairs

    def env(self, target: str) -> dict[str, str]:
        """The ENV of the image built from `target`."""
        return self.pairs(target, "ENV")

    def labels(self, target: str) -> dict[str, str]:
        """The LABELs of the image built from `target`."""
        return self.pairs(target, "LABEL")

    def exec_form(self, target: str, keyword: str) -> list[str]:
        """The last `keyword` (ENTRYPOINT, CMD) of `target`, which must be a JSON array."""
        value = json.loads(self.instructions(target, keyword)[-1])
        assert isinstance(value, list), f"{keyword} of {target} is not exec form"
        return [str(item) for item in value]


def annotations_of(obj: dict[str, Any]) -> dict[str, str]:
    """An object's annotations (none: empty)."""
    return dict(obj["metadata"].get("annotations") or {})


def mebibytes(quantity: str) -> float:
    """A Kubernetes memory quantity (Mi, Gi or bytes) in MiB."""
    match = re.fullmatch(r"(\d+)(Mi|Gi)?", quantity)
    assert match, f"unexpected memory quantity {quantity!r}"
    number, unit = int(match[1]), match[2]
    return number * {"Mi": 1, "Gi": 1024, None: 2**-20}[unit]


def validate(path: Path, version: str | None) -> subprocess.CompletedProcess[str]:
    """kubernetes-validate --strict on a file, for `version` (None: the newest it knows)."""
    command = [venv_tool("kubernetes-validate"), "--strict", "--quiet"]
    command += ["--kubernetes-version", version] if version else []
    return subprocess.run([*command, str(path)], capture_output=True, text=True, check=False)
