"""`sd.einsum`: Einstein summation over Tensors, built from the ops that exist (transpose,
reshape, broadcasting products, sums and `@` over stacks of matrices), so its gradients, tangents
and generated code are theirs.

Subscripts are parsed into one label per axis (a letter, or for the axes an ellipsis covers,
`...1` for the last of them, `...2` before it, as NumPy aligns them from the right). A letter
repeated within one operand takes that operand's diagonal; a letter no later operand and not
the output needs is summed as soon as it can be; then the operands are contracted pairwise,
left to right. A pair that shares a summed index and keeps indices of its own on both sides is
one product of stacked matrices (the shared kept indices its leading axes); any other pair is a
broadcast product, summed over the indices it drops.
"""
from __future__ import annotations

import math

from . import tensors as T
from .errors import ArgumentError, ShapeError
from .ir import format_shape


def einsum(subscripts: str, *operands, optimize=False) -> T.Tensor:
    """Einstein summation, as np.einsum: `einsum('bij,bjk->bik', A, B)` is A @ B per b.

    The output's indices follow `->`, or, without it, the letters used once, in alphabetical
    order (after the ellipsis' axes). `optimize` is accepted for NumPy's sake; the operands
    are contracted left to right.

    >>> import symdiff as sd
    >>> sd.einsum("ij,jk", sd.tensor("A", (2, 3)), sd.tensor("B", (3, 4)))
    Tensor(shape=(2, 4), dtype=float64)

    Raises ArgumentError for subscripts that do not parse or do not fit the number of
    operands; ShapeError for an index whose sizes disagree.
    """
    if not isinstance(subscripts, str):
        raise ArgumentError(f"einsum takes its subscripts as a string first ('ij,jk->ik'), "
                            f"not {type(subscripts).__name__}")
    operands = [T.as_tensor(x, "einsum operand") for x in operands]
    inputs, output = _parse(subscripts, operands)
    sizes = _sizes(subscripts, inputs, operands)
    terms = [_diagonal(x, labels) for x, labels in zip(operands, inputs)]
    x, labels = terms[0]
    for k, (y, other) in enumerate(terms[1:], start=1):
        needed = set(output).union(*(later for _, later in terms[k + 1:]))
        x, labels = _pair(x, labels, y, other, needed, sizes)
    x, labels = _sum_out(x, labels, set(output))
    return T.transpose(x, tuple(labels.index(label) for label in output))


# ---------------------------------------------------------------- the subscripts


def _parse(subscripts: str, operands) -> tuple[list[list[str]], list[str]]:
    """(each operand's labels, the output's labels)."""
    text = subscripts.replace(" ", "")
    left, arrow, right = text.partition("->")
    parts = left.split(",")
    if len(parts) != len(operands):
        raise ArgumentError(f"einsum {subscripts!r} has subscripts for {len(parts)} "
                            f"operand{'s' * (len(parts) != 1)}, but {len(operands)} "
                            f"{'were' if len(operands) != 1 else 'was'} given")
    inputs = [_operand_labels(subscripts, part, x, k)
              for k, (part, x) in enumerate(zip(parts, operands))]
    ellipsis = sorted({label for labels in inputs for label in labels if len(label) > 1},
                      key=lambda label: -int(label[3:]))
    if not arrow:  # implicit: the ellipsis' axes, then the letters used once, sorted
        used = [label for labels in inputs for label in labels if len(label) == 1]
        return inputs, ellipsis + sorted(a for a in set(used) if used.count(a) == 1)
    letters = _letters(subscripts, right, "the output")
    if len(set(letters)) != len(letters):
        repeated = next(a for a in letters if letters.count(a) > 1)
        raise ArgumentError(f"einsum {subscripts!r}: the output names index {repeated!r} twice")
    unknown = [a for a in letters if a != "." and not any(a in labels for labels in inputs)]
    if unknown:
        raise ArgumentError(f"einsum {subscripts!r}: output index {unknown[0]!r} is in no "
                            f"operand")
    if "." not in letters and ellipsis:
        raise ArgumentError(f"einsum {subscripts!r}: the operands' '...' covers axes the "
                            f"output does not name; write '...' in the output too")
    return inputs, [label for a in letters for label in (ellipsis if a == "." else [a])]


def _letters(subscripts: str, part: str, what: str) -> list[str]:
    """The letters of one operand's (or the output's) subscripts, '...' as one '.'."""
    if part.count("...") > 1 or part.replace("...", "").count("."):
        raise ArgumentError(f"einsum {subscripts!r}: {what} has a '.' that is not one '...'")
    letters = list(part.replace("...", "."))
    bad = [a for a in letters if a != "." and not (a.isascii() and a.isalpha())]
    if bad:
        raise ArgumentError(f"einsum {subscripts!r}: {what} has {bad[0]!r}; indices are the "
                            f"letters a-z and A-Z")
    return letters


def _operand_labels(subscripts: str, part: str, x: T.Tensor, k: int) -> list[str]:
    letters = _letters(subscripts, part, f"operand {k}")
    named = len(letters) - ("." in letters)
    if x.ndim < named or "." not in letters and x.ndim != named:
        raise ShapeError(f"einsum {subscripts!r}: operand {k} has shape "
                         f"{format_shape(x.shape)}, but its subscripts {part!r} name "
                         f"{named} ax{'is' if named == 1 else 'es'}")
    if "." not in letters:
        return letters
    at = letters.index(".")
    covered = x.ndim - named
    return letters[:at] + [f"...{covered - j}" for j in range(covered)] + letters[at + 1:]


def _sizes(subscripts: str, inputs, operands) -> dict:
    """Each label's size: the same wherever it appears, or 1 in some operands (broadcast);
    a letter repeated within one operand (a diagonal) has one size there."""
    sizes, first = {}, {}
    for k, (labels, x) in enumerate(zip(inputs, operands)):
        for label, d in zip(labels, x.shape):
            if label not in sizes or sizes[label] == 1 and first[label] != k:
                sizes[label], first[label] = d, k
            elif d != sizes[label] and (d != 1 or first[label] == k):
                where = "the '...' axis" if len(label) > 1 else f"index {label!r}"
                raise ShapeError(f"einsum {subscripts!r}: {where} has size {sizes[label]} in "
                                 f"operand {first[label]} but {d} in operand {k}")
    return sizes


# ---------------------------------------------------------------- building blocks


def _diagonal(x: T.Tensor, labels: list[str]) -> tuple[T.Tensor, list[str]]:
    """x with each repeated label's axes reduced to their diagonal (a select, then a sum that
    adds the zeros off it), each label once."""
    labels = list(labels)
    while len(set(labels)) != len(labels):
        a = next(k for k, label in enumerate(labels) if labels.count(label) > 1)
        b = labels.index(labels[a], a + 1)
        on = T.iota(x.shape, a) == T.iota(x.shape, b)
        x = T.sum(T.where(on, x, 0.0), axis=b)
        del labels[b]
    return x, labels


def _sum_out(x: T.Tensor, labels: list[str], needed: set) -> tuple[T.Tensor, list[str]]:
    """x summed over the labels not `needed`."""
    axes = tuple(k for k, label in enumerate(labels) if label not in needed)
    if not axes:
        return x, labels
    return T.sum(x, axis=axes), [label for label in labels if label in needed]


def _pair(x, a, y, b, needed: set, sizes: dict):
    """The contraction of x (labels a) with y (labels b), keeping the `needed` labels:
    (the result, its labels)."""
    x, a = _sum_out(x, a, needed | set(b))
    y, b = _sum_out(y, b, needed | set(a))
    shared = [label for label in a if label in b]
    batch = [label for label in shared if label in needed]
    summed = [label for label in shared if label not in needed]
    own_x = [label for label in a if label not in b]
    own_y = [label for label in b if label not in a]
    out = batch + own_x + own_y
    if summed and own_x and own_y and _flat(summed, sizes):
        if not _flat(own_y, sizes) and _flat(own_x, sizes) and not batch:
            return _pair(y, b, x, a, needed, sizes)  # the stack on the left
        if _flat(own_y, sizes) and (_flat(own_x, sizes) or not batch):
            # x's own labels as one axis, or (one of unknown size among them) each its own:
            # a stack of matrices times one matrix, one product
            rows = [own_x] if _flat(own_x, sizes) else [[label] for label in own_x]
            left = _grouped(x, a, sizes, batch, rows, summed)
            right = _grouped(y, b, sizes, batch, [summed], own_y)
            product = T.matmul(left, right)
            return T.reshape(product, tuple(sizes[label] for label in out)), out
    full = out + summed
    product = _spread(x, a, full, sizes) * _spread(y, b, full, sizes)
    return _sum_out(product, full, set(out))


def _spread(x, labels, full, sizes):
    """x broadcast over the labels `full`, its axes in their order."""
    order = sorted(labels, key=full.index)
    x = T.transpose(x, tuple(labels.index(label) for label in order))
    return T.broadcast_in_dim(x, tuple(sizes[label] for label in full),
                              tuple(full.index(label) for label in order))


def _flat(group: list[str], sizes: dict) -> bool:
    """Whether a group of labels can be one axis: a single one, or all of known size."""
    return len(group) == 1 or all(isinstance(sizes[label], int) for label in group)


def _grouped(x, labels, sizes, batch, rows, cols):
    """x as a stack of matrices: its `batch` axes leading (at their full size), then each
    group of labels in `rows` as one axis, then the `cols` labels as one."""
    order = batch + [label for group in rows for label in group] + cols
    x = T.transpose(x, tuple(labels.index(label) for label in order))
    x = T.broadcast_to(x, tuple(sizes[label] for label in order))  # where a size is 1
    lead = tuple(sizes[label] for label in batch)
    return T.reshape(x, lead + tuple(_product(g, sizes) for g in rows) + (_product(cols, sizes),))


def _product(group: list[str], sizes: dict):
    return sizes[group[0]] if len(group) == 1 else math.prod(sizes[label] for label in group)
