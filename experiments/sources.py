"""Building source-specific experiment classes from the source-independent ones.

:func:`variant` turns an experiment of :mod:`experiments.imaging` into one for a given
source by mixing in the class that switches that source, and inserting the source (and
optional extra devices) as constructor arguments after ``camera``.
"""

from __future__ import annotations

import inspect
from typing import Any

from experiments.imaging import ImagingExperiment


def variant(
    base: type[ImagingExperiment],
    mixin: type,
    source: inspect.Parameter,
    extra: tuple[inspect.Parameter, ...] = (),
    defaults: dict[str, Any] | None = None,
    doc: str = "",
) -> type[ImagingExperiment]:
    """A subclass of ``mixin`` and ``base`` whose ``__ainit__`` takes ``source`` right after
    ``camera`` and the keyword-or-positional ``extra`` parameters after the others (before
    any keyword-only ones), stores them as ``_<name>`` and passes everything else to
    ``base``. ``defaults`` replace defaults of ``base``'s parameters."""
    signature = inspect.signature(base.__ainit__)
    parameters = []
    for parameter in signature.parameters.values():
        if defaults and parameter.name in defaults:
            parameter = parameter.replace(default=defaults[parameter.name])
        parameters.append(parameter)
        if parameter.name == "camera":
            parameters.append(source)
    keyword_only = [index for index, parameter in enumerate(parameters)
                    if parameter.kind is inspect.Parameter.KEYWORD_ONLY]
    at = keyword_only[0] if keyword_only else len(parameters)
    parameters[at:at] = extra
    own = [source.name, *(parameter.name for parameter in extra)]
    new_signature = signature.replace(parameters=parameters)

    async def __ainit__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        bound = new_signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        del arguments["self"]
        for name in own:
            setattr(self, "_" + name, arguments.pop(name))
        await base.__ainit__(self, **arguments)

    __ainit__.__signature__ = new_signature  # type: ignore[attr-defined]
    __ainit__.__doc__ = f"Arguments as :class:`{base.__qualname__}`, plus ``{source.name}``" + (
        "".join(f" and ``{parameter.name}``" for parameter in extra) + ".")
    namespace = {"__ainit__": __ainit__, "__doc__": doc or base.__doc__,
                 "__module__": mixin.__module__}
    return type(base.__name__, (mixin, base), namespace)


__all__ = ["variant"]
