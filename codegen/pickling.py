"""A `Compiled` as bytes and back: its Programs as data and its options, never machine code.

Pickling takes every Program the model can run (value, gradient, forward mode, second order,
per-example clipping), stores them with `symdiff.serialize` beside wrt, title, tangents and
options, pickles that once and keeps the bytes with their SHA-256 on the object, so shipping one
model to many tasks costs one serialisation. Unpickling rebuilds a Compiled once per process and
digest: the generated text is the same, so its module and machine code come from the on-disk
cache when this machine has compiled the model before, and are compiled once otherwise.
"""
from __future__ import annotations

import hashlib
import pickle
import threading

from symdiff.errors import SymdiffError
from symdiff.serialize import programs_from_data, programs_to_data

_rebuilt: dict[str, object] = {}  # digest -> Compiled, the most recent KEEP per process
KEEP = 32
_lock = threading.Lock()


def reduce_compiled(compiled) -> tuple:
    """`Compiled.__reduce__`: (rebuild, (digest, bytes))."""
    packed = compiled.__dict__.get("_pickled")
    if packed is None:
        programs = {}
        for kind, build in compiled._programs.items():
            try:
                programs[kind] = compiled._kernels[kind].program \
                    if kind in compiled._kernels else build()
            except SymdiffError:  # a kind this model cannot have (per-example clipping of a
                pass  # loss that is no mean of per-example terms): left out, as unavailable
        state = dict(programs=programs_to_data(programs), wrt=compiled.wrt,
                     title=compiled.title, tangents=compiled._tangents,
                     parallel=compiled._parallel, timings=compiled._timings,
                     check_finite=compiled.check_finite, tier=compiled._tier, aux=compiled.aux)
        blob = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        packed = compiled._pickled = (hashlib.sha256(blob).hexdigest(), blob)
    return rebuild, packed


def rebuild(digest: str, blob: bytes):
    """The Compiled that `blob` describes: made once per process, then shared."""
    with _lock:
        compiled = _rebuilt.get(digest)
        if compiled is None:
            from .compiled import Compiled
            state = pickle.loads(blob)
            programs = programs_from_data(state.pop("programs"))
            compiled = Compiled({kind: (lambda p=p: p) for kind, p in programs.items()},
                                **state)
            compiled._pickled = (digest, blob)
            _rebuilt[digest] = compiled
            if len(_rebuilt) > KEEP:
                del _rebuilt[next(iter(_rebuilt))]
    return compiled
