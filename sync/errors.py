"""Errors of fetching and reading exports, shared by the downloader and the reader."""

from __future__ import annotations


class ExportError(Exception):
    """An export could not be fetched or read."""


class ExportNotReady(ExportError):
    """The server kept building the export for longer than the configured wait."""


class ExportChecksumMismatch(ExportError):
    """Every download attempt produced bytes that do not match the advertised sha256."""


class InvalidExport(ExportError):
    """The file is not a readable OCL export (bad archive, unsafe member, bad JSON)."""


class ExportBuildFailed(ExportError):
    """The server reports that building the export failed."""


class DownloadStopped(ExportError):
    """The download was asked to stop (shutdown)."""
