"""A small model registry: register_model, build_model(name, **kwargs), list_models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering a builder function under ``name``; a duplicate name is an error."""

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered ({_REGISTRY[name]!r})")
        _REGISTRY[name] = builder
        return builder

    return decorator


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with keyword arguments."""
    return model_builder(name)(**kwargs)


def model_builder(name: str) -> Callable[..., nn.Module]:
    """The builder function registered as ``name`` (its signature lists the model's options)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {list_models()}")
    return _REGISTRY[name]


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


__all__ = ["build_model", "list_models", "model_builder", "register_model"]
