"""Keyword arguments checked where the user writes them: a misspelt one fails at once, naming the closest
valid name among every set the call takes."""
import difflib
from typing import Any, Dict, Iterable, Mapping

__all__ = ["check_keywords"]


def check_keywords(given: Mapping[str, Any], valid: Dict[str, Iterable[str]], where: str, open_ended: bool = False) -> None:
    """Raises ``TypeError`` for a keyword in ``given`` that is in none of the ``valid`` sets (label -> names),
    naming it, the closest valid name if one is close, and every set. ``open_ended``: the call passes other
    keywords on (to a library), so only a near miss of a valid name is refused.

    >>> check_keywords({"shufle_buffer": 10}, {"wds_pipe options": ["shuffle_buffer", "seed"]}, "wds_pipe")
    Traceback (most recent call last):
    ...
    TypeError: unknown keyword argument 'shufle_buffer' for wds_pipe (did you mean 'shuffle_buffer'?); wds_pipe options: shuffle_buffer, seed
    """
    sets = {label: list(names) for label, names in valid.items()}
    known = [name for names in sets.values() for name in names]
    for name in given:
        if name in known:
            continue
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        if open_ended and not near:
            continue
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        listed = "; ".join(f"{label}: {', '.join(names) or '(none)'}" for label, names in sets.items())
        raise TypeError(f"unknown keyword argument {name!r} for {where}{hint}; {listed}")
