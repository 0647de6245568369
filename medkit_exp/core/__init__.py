"""Document model: the currency of components, loaders and evaluators."""

from medkit_exp.core.document import (
    AnnotationContainer,
    AnnotationError,
    Attribute,
    Entity,
    Segment,
    Span,
    TextDocument,
    covered_text,
)

__all__ = [
    "AnnotationContainer",
    "AnnotationError",
    "Attribute",
    "Entity",
    "Segment",
    "Span",
    "TextDocument",
    "covered_text",
]
