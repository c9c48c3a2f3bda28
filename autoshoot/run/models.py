"""Model residency: every model of a run inside one GPU memory budget (``--vram``).

Stages ask for their models with ``job.sessions.get(key, factory, size_gib=..., work_gib=...)``.
The manager builds a model on first use, keeps what fits in the budget, and when the next model
needs room it moves the least recently used one to CPU memory (``evict="cpu"``) or drops it
(``evict="drop"``: closed, rebuilt by its factory when asked for again). This is the idea of
ComfyUI's ``model_management`` (load on demand, free the least recently used) with the moving
done by torch/accelerate: ``nn.Module.to`` per module, the size measured with
``accelerate.utils.compute_module_sizes``; nothing here allocates memory itself.

Budget accounting, in bytes:

    resident  = the sizes of the models now on the GPU (declared, else measured when built)
    need(m)   = size(m) + work(m)      work: the activations the model's stage needs on top
    a model is made resident after evicting, least recently used first, until
    resident + need(m) <= budget; models pinned by the running stage are never evicted.

When even evicting everything unpinned leaves too little room, the model still loads (the budget
is a plan, not a cap) and a warning says so: an out-of-memory error that follows fails that SKU
(``runner``), naming the budget and the setting that fixes it.

How a model moves: an object may define ``residency_offload()`` and ``residency_onload()``;
otherwise the manager moves every ``torch.nn.Module`` it finds on it (the object itself, its
attributes, and modules in dataclass fields, lists and dicts one level down) that sits on the
GPU. An object with no module on the GPU (a CPU run, a rules VLM) costs nothing in the budget.

Every load, move and release is logged on ``autoshoot.residency`` at INFO (``-v``) with its size
and device; the runner copies these lines into ``RUN/run.log``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

logger = logging.getLogger("autoshoot.residency")

GIB = 1024**3
Evict = Literal["cpu", "drop"]


def gib(n_bytes: float) -> str:
    return f"{n_bytes / GIB:.2f} GiB"


def one_call_at_a_time(method: Callable[..., Any]) -> Callable[..., Any]:
    """A model's method that runs one call at a time per object. The runner keeps two SKUs in
    the GPU lane and two in composite/score at once (``run.lanes``): their calls to the same
    model take turns, so its activations are never held twice (the budget counts them once),
    and the other SKU's CPU work runs meanwhile."""
    import functools

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        lock = self.__dict__.get("_one_call_lock")
        if lock is None:
            with _LOCKS_LOCK:
                lock = self.__dict__.setdefault("_one_call_lock", threading.RLock())
        with lock:
            return method(self, *args, **kwargs)

    return wrapper


_LOCKS_LOCK = threading.Lock()


@contextmanager
def own_stream(device: Any) -> Iterator[None]:
    """Run the block's GPU work on a CUDA stream of this thread's own, not on the default stream
    where the renderer queues its batches (``SDXLRenderer.denoise``). A model that waits for
    its results (the VLM at every token, the upscaler, the bag detector, the segmenter) then
    waits for its own work only, not for seconds of another SKU's render queued ahead of it.
    The block must leave its results on the host; the models' weights are in place before
    (``Sessions`` synchronises after a load or a move). A no-op off CUDA."""
    torch = _torch()
    name = str(getattr(device, "type", device) or "")
    if torch is None or not name.startswith("cuda") or not torch.cuda.is_available():
        yield
        return
    device = torch.device(device)
    streams = _STREAMS.__dict__.setdefault("by_device", {})
    stream = streams.get(device)
    if stream is None:
        stream = streams[device] = torch.cuda.Stream(device)
    with torch.cuda.stream(stream):
        yield


_STREAMS = threading.local()


def on_own_stream(method: Callable[..., Any]) -> Callable[..., Any]:
    """A model's method whose GPU work runs on its thread's own stream (``own_stream``) on
    ``self.device``. The method must return its results on the host."""
    import functools

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with own_stream(getattr(self, "device", None)):
            return method(self, *args, **kwargs)

    return wrapper


class ModelPool:
    """Instances of a CPU model that cannot share one between threads (a MediaPipe graph runs
    one image at a time), one per concurrent caller: two SKUs scored at once (``run.lanes``),
    or a SKU's candidates scored in parallel, run side by side instead of waiting on each
    other. ``pool.method(...)`` borrows a free instance for the call (built by ``factory`` when
    none is free), so there are never more instances than calls that ran at once; ``close``
    closes them all."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory = factory
        self._free: list[Any] = []
        self._all: list[Any] = []
        self._lock = threading.Lock()

    @contextmanager
    def instance(self) -> Iterator[Any]:
        with self._lock:
            obj = self._free.pop() if self._free else None
        if obj is None:
            obj = self._factory()
            with self._lock:
                self._all.append(obj)
        try:
            yield obj
        finally:
            with self._lock:
                self._free.append(obj)

    def __getattr__(self, name: str) -> Any:
        if name.startswith(("_", "residency_")):  # the manager's own hooks: none here
            raise AttributeError(name)
        with self.instance() as obj:
            attr = getattr(obj, name)
        if not callable(attr):
            return attr

        def borrowed(*args: Any, **kwargs: Any) -> Any:
            with self.instance() as each:
                return getattr(each, name)(*args, **kwargs)

        return borrowed

    def close(self) -> None:
        with self._lock:
            built, self._all, self._free = self._all, [], []
        for obj in built:
            close = getattr(obj, "close", None)
            if close is not None:
                close()


@dataclass
class Entry:
    key: str
    factory: Callable[[], Any] | None
    obj: Any = None
    size: int = 0  # bytes it takes on the GPU when resident
    work: int = 0  # bytes of activations its stage needs on top
    evict: Evict = "cpu"
    on_gpu: bool = False
    last_used: float = 0.0
    pins: set[str] = field(default_factory=set)  # the running stages (per thread) that hold it
    users: set[str] = field(default_factory=set)  # the stages that asked for it
    # modules moved to the CPU by offload, so that onload returns exactly these
    moved: list[tuple[Any, Any]] = field(default_factory=list)

    @property
    def built(self) -> bool:
        return self.obj is not None

    @property
    def pinned(self) -> bool:
        return bool(self.pins)


class Residency:
    """The run's models and the GPU budget they share. Thread-safe (one lock).

    budget_bytes: None = no budget (nothing is ever evicted; a CPU run, or an unlimited GPU).
    """

    def __init__(self, budget_bytes: int | None = None, device: str = "cuda", label: str = ""):
        self.budget = budget_bytes
        self.device = device
        self.label = label or (f"{budget_bytes / GIB:g} GiB" if budget_bytes else "no limit")
        self.entries: dict[str, Entry] = {}
        self.events: list[tuple[str, str]] = []  # (action, key): load, onload, offload, drop, over
        self.lock = threading.RLock()
        self.clock = time.monotonic  # replaced in tests for a fixed order
        self.local = threading.local()  # the stage this thread runs, for ``used_by``

    # -- the one call a stage makes -------------------------------------------------------

    def get(
        self,
        key: str,
        factory: Callable[[], Any],
        *,
        size_gib: float | None = None,
        work_gib: float = 0.0,
        evict: Evict = "cpu",
    ) -> Any:
        """The model ``key``, resident: built by ``factory`` on first use, moved back to the GPU
        if it was offloaded. ``size_gib``: its GPU size if known (else measured when built);
        ``work_gib``: activations its use needs on top. Pins it until ``unpin_all``."""
        with self.lock:
            entry = self.entries.get(key)
            if entry is None:
                entry = self.entries[key] = Entry(key, factory, evict=evict)
            entry.factory = factory
            entry.evict = evict
            entry.work = int(work_gib * GIB)
            if size_gib is not None:
                entry.size = int(size_gib * GIB)
            stage = getattr(self.local, "stage", None) or ""
            entry.pins.add(getattr(self.local, "pin", None) or stage)
            entry.last_used = self.clock()
            if stage:
                entry.users.add(stage)
            if not entry.built:
                self._make_room(entry, entry.size + entry.work)
                self._build(entry, declared=size_gib is not None)
            elif not entry.on_gpu and entry.size:
                self._make_room(entry, entry.size + entry.work)
                self._onload(entry)
            elif entry.work:
                self._make_room(entry, entry.size + entry.work, resident_already=True)
            return entry.obj

    def register(
        self,
        key: str,
        obj: Any,
        *,
        size_gib: float | None = None,
        work_gib: float = 0.0,
        evict: Evict = "cpu",
    ) -> Any:
        """Manage a model built elsewhere (already where it should be)."""
        with self.lock:
            entry = self.entries[key] = Entry(key, None, obj=obj, evict=evict, work=int(work_gib * GIB))
            entry.size = int(size_gib * GIB) if size_gib is not None else measure_gpu_bytes(obj, self.device)
            entry.on_gpu = entry.size > 0
            entry.last_used = self.clock()
            self._log("register", entry)
            return obj

    # -- phases ---------------------------------------------------------------------------

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Around one stage's work: its models are pinned while it runs and unpinned after."""
        previous = getattr(self.local, "stage", None), getattr(self.local, "pin", None)
        # the pin is this thread's: two SKUs in the same stage at once (run.lanes) hold their
        # models until both are done
        pin = f"{name}@{threading.get_ident()}"
        self.local.stage, self.local.pin = name, pin
        try:
            yield
        finally:
            self.local.stage, self.local.pin = previous
            with self.lock:
                for entry in self.entries.values():
                    entry.pins.discard(pin)

    def used_by(self, stage: str) -> list[str]:
        return [k for k, e in self.entries.items() if stage in e.users]

    def unpin_all(self) -> None:
        """The stage that used these models is done: they may be evicted from now on."""
        with self.lock:
            for entry in self.entries.values():
                entry.pins.clear()

    def release(self, *keys: str, drop: bool = False) -> None:
        """Move these models off the GPU now, or drop them; with no keys, every model that no
        running stage holds (another thread's stage may be using one)."""
        with self.lock:
            for key in keys or [k for k, e in self.entries.items() if not e.pinned]:
                entry = self.entries.get(key)
                if entry is None or not entry.built:
                    continue
                entry.pins.clear()
                if drop or entry.evict == "drop":
                    self._drop(entry)
                elif entry.on_gpu:
                    self._offload(entry)
            empty_cache()

    def fits(self, extra_bytes: int) -> bool:
        """Whether ``extra_bytes`` more fit beside what is resident now."""
        return self.budget is None or self.resident_bytes() + extra_bytes <= self.budget

    def keys_matching(self, prefix: str) -> list[str]:
        return [k for k in self.entries if k.startswith(prefix)]

    # -- what is where --------------------------------------------------------------------

    def resident_bytes(self) -> int:
        return sum(e.size for e in self.entries.values() if e.built and e.on_gpu)

    def resident(self) -> list[tuple[str, int]]:
        return [(e.key, e.size) for e in self.entries.values() if e.built and e.on_gpu]

    def describe(self) -> str:
        """One line: the budget and what is on the GPU, for logs and out-of-memory messages."""
        parts = [f"{k} {gib(s)}" for k, s in self.resident()]
        on_cpu = [e.key for e in self.entries.values() if e.built and not e.on_gpu and e.size]
        text = (
            f"budget {self.label}; on the GPU: {', '.join(parts) or 'nothing'} ({gib(self.resident_bytes())})"
        )
        if on_cpu:
            text += f"; offloaded to CPU: {', '.join(on_cpu)}"
        return text

    def loaded(self) -> list[str]:
        return [k for k, e in self.entries.items() if e.built]

    def close(self) -> None:
        with self.lock:
            for entry in list(self.entries.values()):
                if entry.built:
                    close_object(entry.obj)
                    entry.obj = None
            self.entries.clear()

    # -- internals ------------------------------------------------------------------------

    def _make_room(self, entry: Entry, need: int, resident_already: bool = False) -> None:
        if self.budget is None:
            return
        resident = self.resident_bytes() - (entry.size if resident_already else 0)
        evicted = False
        while resident + need > self.budget:
            victims = [
                e for e in self.entries.values() if e.built and e.on_gpu and not e.pinned and e is not entry
            ]
            if not victims:
                self.events.append(("over", entry.key))
                logger.warning(
                    "%s needs %s (weights and activations) but only %s of the %s budget is free with "
                    "every other model off the GPU; loading it anyway (%s)",
                    entry.key,
                    gib(need),
                    gib(max(0, self.budget - resident)),
                    self.label,
                    self.describe(),
                )
                return
            victim = min(victims, key=lambda e: e.last_used)
            if victim.evict == "drop":
                self._drop(victim)
            else:
                self._offload(victim)
            evicted = True
            resident = self.resident_bytes() - (entry.size if resident_already else 0)
        if evicted:
            # only then: emptying the cache makes the next allocations ask CUDA again, and it
            # waits for everything queued on the GPU (every stage's call asks for its model)
            empty_cache()

    def _build(self, entry: Entry, declared: bool) -> None:
        assert entry.factory is not None
        before = gpu_allocated(self.device)
        started = time.perf_counter()
        entry.obj = entry.factory()
        if not declared:
            grown = gpu_allocated(self.device) - before
            entry.size = grown if grown > 0 else measure_gpu_bytes(entry.obj, self.device)
        entry.on_gpu = entry.size > 0 or gpu_module_count(entry.obj) > 0
        synchronize()  # its weights are in place before a call on another stream reads them
        self._log("load", entry, f" in {time.perf_counter() - started:.1f} s")

    def _onload(self, entry: Entry) -> None:
        started = time.perf_counter()
        onload = getattr(entry.obj, "residency_onload", None)
        if callable(onload):
            onload()
        else:
            for module, device in entry.moved:
                module.to(device)
        entry.moved = []
        entry.on_gpu = True
        synchronize()
        self._log("onload", entry, f" in {time.perf_counter() - started:.1f} s")

    def _offload(self, entry: Entry) -> None:
        started = time.perf_counter()
        offload = getattr(entry.obj, "residency_offload", None)
        if callable(offload):
            offload()
        else:
            entry.moved = []
            for module in gpu_modules(entry.obj):
                entry.moved.append((module, module_device(module)))
                module.to("cpu")
        entry.on_gpu = False
        self._log("offload", entry, f" in {time.perf_counter() - started:.1f} s")

    def _drop(self, entry: Entry) -> None:
        close_object(entry.obj)
        entry.obj = None
        entry.on_gpu = False
        entry.moved = []
        self._log("drop", entry)
        empty_cache()

    def _log(self, action: str, entry: Entry, extra: str = "") -> None:
        self.events.append((action, entry.key))
        where = self.device if entry.on_gpu else "cpu"
        logger.info(
            "%s %s (%s on %s%s)%s; %s",
            action,
            entry.key,
            gib(entry.size),
            where,
            f", +{gib(entry.work)} activations" if entry.work else "",
            extra,
            self.describe(),
        )


# ---------------------------------------------------------------------------------------
# modules, sizes and the allocator (torch imported only when a GPU is in play)


def _torch() -> Any:
    import sys

    return sys.modules.get("torch")


def find_modules(obj: Any, depth: int = 3) -> list[Any]:
    """The ``torch.nn.Module``s that make up ``obj``: itself, or those on its attributes,
    dataclass fields, lists and dicts (``depth`` levels down). Each module once."""
    torch = _torch()
    if torch is None or obj is None:
        return []
    found: list[Any] = []
    seen: set[int] = set()

    def visit(value: Any, level: int) -> None:
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, torch.nn.Module):
            found.append(value)
            return
        if level <= 0 or isinstance(value, (str, bytes, int, float, torch.Tensor)):
            return
        if isinstance(value, dict):
            children = list(value.values())
        elif isinstance(value, (list, tuple)):
            children = list(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            children = [getattr(value, f.name) for f in dataclasses.fields(value)]
        elif hasattr(value, "__dict__") and not isinstance(value, type):
            children = list(vars(value).values())
        else:
            return
        for child in children:
            visit(child, level - 1)

    visit(obj, depth)
    # a module inside another found module moves with it
    inner = {id(sub) for m in found for sub in m.modules() if sub is not m}
    return [m for m in found if id(m) not in inner]


def module_device(module: Any) -> Any:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return None


def gpu_modules(obj: Any) -> list[Any]:
    return [m for m in find_modules(obj) if getattr(module_device(m), "type", "cpu") == "cuda"]


def gpu_module_count(obj: Any) -> int:
    return len(gpu_modules(obj))


def measure_gpu_bytes(obj: Any, device: str = "cuda") -> int:
    """Bytes of ``obj``'s weights on the GPU (accelerate's ``compute_module_sizes``)."""
    modules = gpu_modules(obj)
    if not modules:
        return 0
    from accelerate.utils import compute_module_sizes

    return int(sum(compute_module_sizes(m)[""] for m in modules))


def gpu_allocated(device: str = "cuda") -> int:
    torch = _torch()
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return 0
    return int(torch.cuda.memory_allocated(device))


def synchronize() -> None:
    torch = _torch()
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def empty_cache() -> None:
    torch = _torch()
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        import gc

        gc.collect()
        torch.cuda.empty_cache()


def close_object(obj: Any) -> None:
    close = getattr(obj, "close", None)
    if callable(close):
        try:
            close()
        except Exception as err:  # noqa: BLE001 - closing must never stop the run
            logger.warning("closing %s failed: %s", type(obj).__name__, err)


# ---------------------------------------------------------------------------------------
# the budget


def parse_vram(value: Any) -> float | None:
    """``--vram``: "auto" → None (decided from the GPU), a number of GiB → that; 0 = no limit."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("", "auto"):
        return None
    try:
        number = float(text)
    except ValueError:
        from autoshoot.errors import ConfigError

        raise ConfigError(
            f"run.vram = {value!r}: use auto, 0 (no limit) or a number of GiB, e.g. 24"
        ) from None
    if number < 0:
        from autoshoot.errors import ConfigError

        raise ConfigError(f"run.vram = {value!r} is negative: use auto, 0 (no limit) or GiB, e.g. 24")
    return number


def free_gpu_gib(device: str = "cuda") -> float | None:
    """The GPU's free memory now, in GiB; None without a CUDA GPU (imports torch)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info(torch.device(device if ":" in device else "cuda"))
    return free / GIB
