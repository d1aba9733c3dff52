"""One name per element for both kinds of page tests: NiceGUI's user simulation finds `.mark(name)`, browser tests
find `data-testid=name`."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # NiceGUI is imported by the pages, after `serve` set its storage location
    from nicegui.element import Element

E = TypeVar("E", bound="Element")


def tagged(element: E, name: str) -> E:
    element.mark(name)
    element.props["data-testid"] = name
    return element
