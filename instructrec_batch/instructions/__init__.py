"""InstructRec instructions: the template library, preference/intention extraction, prompt assembly.

Public API: load_template_library, build_prompts (nightly inference prompts, one per user) and
build_training_examples (tuning and validation examples over all task forms). Pure transforms.
"""

from __future__ import annotations

from .prompts import build_prompts
from .templates import Template, TemplateError, TemplateLibrary, load_template_library
from .training import build_training_examples

__all__ = [
    "Template",
    "TemplateError",
    "TemplateLibrary",
    "build_prompts",
    "build_training_examples",
    "load_template_library",
]
