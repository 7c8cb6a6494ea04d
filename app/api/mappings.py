"""Mappings: list and create on HEAD, read at any version, update, retire or delete."""

from ..domain.content import MAPPING
from ..domain.payloads import MappingSchema, MappingUpdateSchema
from .items import item_blueprint
from .schemas import MappingOut

blp = item_blueprint(MAPPING, MappingSchema, MappingUpdateSchema, MappingOut)
