"""What the native core runs with on this machine."""

from __future__ import annotations

from typing import Any

from . import _lenet5


def native_info() -> dict[str, Any]:
    """The native core's set-up in this process: which kernels run, why, and on what CPU.

    The kernels are compiled for several instruction sets; the widest one the CPU has is
    chosen once per process, the same in every process on one machine (so results keep
    their bits from run to run), unless the environment variable ``LENET5_ISA``
    (``scalar``, ``avx2`` or ``avx512``), read at the first native call, forces one.
    Results are bit-identical for any ``n_jobs`` on one path; between paths they may
    differ in the last bits.

    Returns
    -------
    dict
        ``"isa"``: the path in use, ``"avx512"``, ``"avx2"`` (with FMA) or
        ``"scalar"`` (the values ``LENET5_ISA`` takes); ``"lanes"``: images per wide
        chunk of the training and batch kernels (16, 8, 8); ``"reason"``: why this path;
        ``"requested"``: the value of ``LENET5_ISA`` or None; ``"available"``: the paths
        this CPU can run, widest first; ``"cpu"``: the CPU's name; ``"cpu_family"``,
        ``"cpu_model"``, ``"cpu_stepping"``: its x86 signature (None elsewhere);
        ``"threads"``: the cores ``n_jobs=-1`` uses; ``"arch"``; ``"version"``: the
        extension's version.

    Examples
    --------
    >>> import lenet5
    >>> info = lenet5.native_info()
    >>> info["isa"] in info["available"]
    True
    """
    return dict(_lenet5.native_info())
