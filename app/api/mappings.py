"""Mappings: list and create on HEAD, read at any version, update, retire or delete."""

from ..domain.content import Content
from ..domain.payloads import MappingSchema, MappingUpdateSchema
from ..model import MAPPING
from .items import item_blueprint
from .schemas import MappingOut

blp = item_blueprint(MAPPING, MappingSchema, MappingUpdateSchema, MappingOut,
                     save_item=Content.save_mapping, update_item=Content.update_mapping)
