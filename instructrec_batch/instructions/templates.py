"""The template library: InstructRec instructions as data (templates.yaml), validated on load."""

from __future__ import annotations

import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from ..errors import InstructRecError

TASK_FORMS = ("pointwise", "pairwise", "matching", "reranking")
# The prompt form each scorer reads: the verbalizer needs lettered candidates; the likelihood scorers
# rank candidate titles after a prompt that asks for a title (a candidate list would only lengthen it).
SCORER_FORMS = {"verbalizer": "reranking", "likelihood": "matching", "naive": "matching"}
ANSWER_FORMATS = {"pointwise": "yes_no", "pairwise": "letter", "matching": "title", "reranking": "letter"}
PLACEHOLDERS = {"history", "preference", "intention", "candidates", "item"}
# What each dimension needs in the text, so a template cannot claim P1 and forget the history.
_NEEDS = {
    ("preference", "P1"): {"history"},
    ("preference", "P2"): {"preference"},
    ("intention", "I1"): {"intention"},
    ("intention", "I2"): {"intention"},
    ("task_form", "pointwise"): {"item"},
    ("task_form", "pairwise"): {"candidates"},
    ("task_form", "reranking"): {"candidates"},
}
# ...and what it must not contain (matching has no list: the model names an item itself).
_FORBIDS = {
    ("preference", "P0"): {"history", "preference"},
    ("intention", "I0"): {"intention"},
    ("task_form", "matching"): {"candidates", "item"},
    ("task_form", "pointwise"): {"candidates"},
}


class TemplateError(InstructRecError, ValueError):
    """The template library is malformed; the message names the template and the problem."""


@dataclass(frozen=True)
class Template:
    id: str
    task_form: str
    preference: str  # P0 | P1 | P2
    intention: str  # I0 | I1 | I2
    answer_format: str  # letter | yes_no | title
    text: str
    placeholders: tuple[str, ...]

    @property
    def variant(self) -> str:
        return self.id.rsplit("-", 1)[-1]

    def render(self, **fields: str) -> str:
        return self.text.format(**{name: fields[name] for name in self.placeholders})


@dataclass(frozen=True)
class TemplateLibrary:
    version: str
    preamble: str
    default_inference: str
    templates: tuple[Template, ...]

    def get(self, template_id: str) -> Template:
        for tpl in self.templates:
            if tpl.id == template_id:
                return tpl
        raise TemplateError(f"no template {template_id!r} in library version {self.version}")

    def for_form(self, task_form: str) -> list[Template]:
        if task_form not in TASK_FORMS:
            raise TemplateError(f"unknown task form {task_form!r}; expected one of {TASK_FORMS}")
        return [t for t in self.templates if t.task_form == task_form]

    def default_for(self, task_form: str) -> Template:
        """default_inference's preference, intention and phrasing in another task form (T3-P1I2-a ->
        T2-P1I2-a), else the first template of that form."""
        default = self.get(self.default_inference)
        same = self.find(task_form, default.preference, default.intention)
        phrased = [t for t in same if t.id.rsplit("-", 1)[-1] == default.id.rsplit("-", 1)[-1]]
        options = phrased or same or self.for_form(task_form)
        if not options:
            raise TemplateError(f"library version {self.version} has no {task_form} template")
        return options[0]

    def serving_template(self, scorer: str, pinned: str | None = None, tuned_best: str | None = None) -> str:
        """The template a scorer serves: a template pinned in the config always; else the tuned model's
        best one (template feedback) when it is in the scorer's form; else the default in that form."""
        if pinned:
            return self.get(pinned).id
        form = SCORER_FORMS[scorer]
        if tuned_best and any(t.id == tuned_best and t.task_form == form for t in self.templates):
            return tuned_best
        return self.default_for(form).id

    def find(self, task_form: str, preference: str, intention: str) -> list[Template]:
        return [
            t for t in self.for_form(task_form) if t.preference == preference and t.intention == intention
        ]

    def closest(self, template: Template, preference: str, intention: str) -> Template:
        """The same task form and phrasing with less information (a user without reviews or intents)."""
        options = self.find(template.task_form, preference, intention)
        if not options:
            raise TemplateError(f"no {template.task_form} template for {preference}{intention}")
        same = [t for t in options if t.variant == template.variant]
        return (same or options)[0]


def _fields_in(text: str, where: str) -> set[str]:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:  # an unbalanced brace
        raise TemplateError(f"{where}: {exc}") from None
    return names


def _validate(raw: dict, where: str) -> Template:
    for key in ("id", "task_form", "preference", "intention", "text"):
        if not raw.get(key):
            raise TemplateError(f"{where}: missing {key!r}")
    where = f"{where} ({raw['id']})"
    if not raw.get("answer_format"):
        raise TemplateError(f"{where}: missing answer_format")
    form = raw["task_form"]
    if form not in TASK_FORMS:
        raise TemplateError(f"{where}: unknown task_form {form!r}")
    if raw["answer_format"] != ANSWER_FORMATS[form]:
        raise TemplateError(f"{where}: {form} answers as {ANSWER_FORMATS[form]!r}, not {raw['answer_format']!r}")
    if raw["preference"] not in ("P0", "P1", "P2") or raw["intention"] not in ("I0", "I1", "I2"):
        raise TemplateError(f"{where}: preference must be P0/P1/P2 and intention I0/I1/I2")
    found = _fields_in(raw["text"], where)
    unknown = found - PLACEHOLDERS
    if unknown:
        raise TemplateError(f"{where}: unknown placeholder(s) {sorted(unknown)}; allowed {sorted(PLACEHOLDERS)}")
    declared = set(raw.get("placeholders") or [])
    if declared != found:
        raise TemplateError(f"{where}: placeholders {sorted(declared)} do not match the text's {sorted(found)}")
    for dim in ("preference", "intention", "task_form"):
        missing = _NEEDS.get((dim, raw[dim]), set()) - found
        if missing:
            raise TemplateError(f"{where}: {dim} {raw[dim]} needs {sorted(missing)} in the text")
        extra = _FORBIDS.get((dim, raw[dim]), set()) & found
        if extra:
            raise TemplateError(f"{where}: {dim} {raw[dim]} must not use {sorted(extra)}")
    return Template(
        id=raw["id"],
        task_form=form,
        preference=raw["preference"],
        intention=raw["intention"],
        answer_format=raw["answer_format"],
        text=raw["text"].rstrip("\n"),
        placeholders=tuple(sorted(found)),
    )


def parse_library(doc: dict, source: str = "<templates>") -> TemplateLibrary:
    if not isinstance(doc, dict) or not doc.get("version") or not isinstance(doc.get("templates"), list):
        raise TemplateError(f"{source}: needs a `version` and a `templates` list")
    templates = tuple(_validate(raw, f"{source} template #{n}") for n, raw in enumerate(doc["templates"]))
    ids = [t.id for t in templates]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise TemplateError(f"{source}: duplicate template ids {dupes}")
    library = TemplateLibrary(
        version=str(doc["version"]),
        preamble=str(doc.get("preamble") or "").strip(),
        default_inference=str(doc.get("default_inference") or ""),
        templates=templates,
    )
    default = library.get(library.default_inference) if library.default_inference else None
    if default is None or default.task_form != "reranking":
        raise TemplateError(f"{source}: default_inference must name a reranking template")
    return library


def load_template_library(path: str | None = None) -> TemplateLibrary:
    """The library at `path`, or the one bundled with the package; validated (TemplateError if not)."""
    if path:
        source, text = str(path), Path(path).read_text()
    else:
        source = "instructrec_batch/instructions/templates.yaml"
        text = resources.files("instructrec_batch.instructions").joinpath("templates.yaml").read_text()
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TemplateError(f"{source}: not valid YAML: {exc}") from None
    return parse_library(doc, source)
