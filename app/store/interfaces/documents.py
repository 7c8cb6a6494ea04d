"""What repositories have in common: `dump`/`load` for `termsync db copy`, and addressing by key
(records of the model, or plain documents by `_id`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from ...model import Document


class Copied:
    """A repository `termsync db copy` moves (`Store.repositories`): every document out, in an
    order `load` takes back."""

    def dump(self) -> Iterator[Document]:
        """Every document, for `termsync db copy`."""
        raise NotImplementedError

    def load(self, documents: Iterable[Document]) -> int:
        """Insert copied documents (replacing any with the same `_id`); return how many."""
        raise NotImplementedError


Record = TypeVar("Record")


class Records(Copied, Generic[Record]):
    """Records of the model addressed by their key (a version's url, a hook's id): get, insert
    (DuplicateKey when the key exists), delete; each repository adds its typed `update`."""

    def get(self, key: str) -> Record | None:
        raise NotImplementedError

    def insert(self, record: Record) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError


class DocumentRepository(Copied):
    """Documents addressed by `_id`: get, insert (DuplicateKey when it exists), update, delete."""

    def get(self, key: str) -> Document | None:
        raise NotImplementedError

    def insert(self, document: Document) -> None:
        """Insert a new document; DuplicateKey if its `_id` exists."""
        raise NotImplementedError

    def update(self, key: str, changes: Document) -> Document | None:
        """Set fields; return the document as it is now (None if there is none)."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError
