"""medkit's module path of the document model (``from medkit.core.text import ...``), so that
medkit code moves over by changing ``medkit`` to ``medkit_exp`` in its imports."""

from medkit_exp.core.document import AnnotationContainer, Attribute, Entity, Segment, Span, TextDocument

__all__ = ["AnnotationContainer", "Attribute", "Entity", "Segment", "Span", "TextDocument"]
