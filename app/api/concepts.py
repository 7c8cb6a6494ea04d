"""Concepts: list and create on HEAD, read at any version, update, retire or delete."""

from ..domain.payloads import ConceptSchema, ConceptUpdateSchema
from ..model import CONCEPT
from .items import item_blueprint
from .schemas import ConceptOut

blp = item_blueprint(CONCEPT, ConceptSchema, ConceptUpdateSchema, ConceptOut)
