"""Bases for a framework package's tensors: its FOBS decomposer and its tensor adapter.

A framework tensor travels as its framework's dtype name plus a numpy array of its bits,
which core's numpy decomposer carries (out of line, streamed when large). The framework
package supplies only the conversions; everything else (where the tensor lands decides what
it becomes, the relayed and widened stand-ins, the safetensors tables) is here:

- a site or a script (the default): the framework's tensor (``from_wire``), bit-exact;
- the server (``lazy_tensors``): a numpy array (``numpy_value``), or core's lazy reference
  to one; dtypes numpy lacks are widened to float32 there, lazily for streamed ones (the
  package's :class:`WidenedFrameworkTensor`);
- a site relaying for a script in its own process (``relay_tensors``): the package's
  :class:`RelayedFrameworkTensor`, sent on as the same reference. Each package defines its
  own relayed type (its module and name are its wire name, registered by its plugin) so a
  relayed reference still says which framework's tensor it is.

A framework package subclasses each (the worked example, for a framework ``hatch``)::

    # ember_hatch/decomposers.py
    import hatch
    from ember.streaming import (
        FrameworkTensorDecomposer, RelayedFrameworkTensor, WidenedFrameworkTensor,
    )
    from ember_hatch.dtypes import check_wire, numpy_value, tensor_from_wire, tensor_to_wire

    class RelayedHatchTensor(RelayedFrameworkTensor):
        from_wire = staticmethod(tensor_from_wire)

    class WidenedHatchTensor(WidenedFrameworkTensor):
        numpy_value = staticmethod(numpy_value)

    class TensorDecomposer(FrameworkTensorDecomposer):
        what = "hatch.Tensor"  # in error messages
        relayed = RelayedHatchTensor
        widened = WidenedHatchTensor
        to_wire = staticmethod(tensor_to_wire)  # -> (dtype name, numpy bits); TypeError
        from_wire = staticmethod(tensor_from_wire)  # ValueError for a malformed array
        numpy_value = staticmethod(numpy_value)

        def supported_type(self) -> type:
            return hatch.Tensor

        def needs_widening(self, name: str, wire: np.dtype) -> bool:
            return check_wire(name, np.empty(0, wire))[2] is not None

    class RelayedHatchTensorDecomposer(TensorDecomposer):
        match_subclasses = False

        def supported_type(self) -> type:
            return RelayedHatchTensor

    # ember_hatch/tensor_downloader.py
    class HatchTensorAdapter(FrameworkTensorAdapter[hatch.Tensor]):
        tensor_format = "hatch"  # the name its plugin registers it under
        framework = "hatch"  # "hatch bfloat16 tensors have no safetensors dtype"
        tensor = "hatch tensor"  # "cannot make a hatch tensor from a F8_E8M0 stream"
        dtypes = DTYPES  # name -> (framework dtype, wire numpy dtype, view or None)
        to_wire = staticmethod(tensor_to_wire)
        from_wire = staticmethod(tensor_from_wire)

        def supports(self, value: Any) -> bool:
            return isinstance(value, hatch.Tensor)

    download_tensors = HatchTensorAdapter().download  # the package's receiving face

and its plugin registers ``TensorDecomposer`` for ``hatch.Tensor``,
``RelayedHatchTensorDecomposer`` for ``ember_hatch.decomposers.RelayedHatchTensor`` and
``HatchTensorAdapter`` as the ``hatch`` tensor adapter.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from ember.fobs.decomposer import Context
from ember.fobs.errors import FOBSError
from ember.streaming.errors import StreamingError
from ember.streaming.fetcher import Fetcher, Progress
from ember.streaming.lazy import DeferredTensor, resolve_relayed

TensorT = TypeVar("TensorT")

#: dtype name -> safetensors dtype code, for the dtypes safetensors has (complex, the fnuz
#: float8s, float4, int4 and int2 have none: they travel in messages only)
SAFETENSORS_CODES: Mapping[str, str] = {
    "bool": "BOOL",
    "uint8": "U8",
    "int8": "I8",
    "int16": "I16",
    "int32": "I32",
    "int64": "I64",
    "uint16": "U16",
    "uint32": "U32",
    "uint64": "U64",
    "float16": "F16",
    "float32": "F32",
    "float64": "F64",
    "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
}


class RelayedFrameworkTensor:
    """A streamed framework tensor passing through a relay (a site between its script's
    process and the server): the reference is sent on, the data stays with its owner.

    Subclasses (one per framework: its wire name) set :meth:`from_wire`."""

    def __init__(self, dtype: str, ref: DeferredTensor) -> None:
        self.dtype = dtype
        self.ref = ref

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.dtype}, {self.ref!r})"

    def from_wire(self, name: str, array: np.ndarray[Any, Any], /) -> Any:
        """The framework's tensor of a wire array."""
        raise NotImplementedError

    def resolve_relayed(self, fetcher: Any) -> Any:
        """Pull the data after all (a relay that needs it: a swarm aggregator)."""
        return self.from_wire(self.dtype, resolve_relayed(self.ref, fetcher))


class WidenedFrameworkTensor(DeferredTensor):
    """A lazy reference to a tensor of a dtype numpy lacks (bfloat16, float8...): the server
    pulls its bits when it aggregates and gets them widened exactly to float32.

    Subclasses set :meth:`numpy_value`."""

    def __init__(self, dtype: str, ref: DeferredTensor) -> None:
        self.framework_dtype = dtype
        self.ref = ref
        self.dtype = np.dtype(np.float32)
        self.shape = ref.shape

    def numpy_value(self, name: str, array: np.ndarray[Any, Any], /) -> np.ndarray[Any, Any]:
        """The wire array's values widened to float32."""
        raise NotImplementedError

    def fetch(self, keep: bool = True, writable: bool = True) -> np.ndarray[Any, Any]:
        return self.numpy_value(self.framework_dtype, self.ref.fetch(keep=keep, writable=False))

    def release(self) -> None:
        self.ref.release()


class FrameworkTensorDecomposer:
    """A framework's tensors as ``{"dtype": name, "array": bits}``; see the module docstring.

    Subclasses set :attr:`what`, :attr:`relayed`, :attr:`widened`, ``supported_type`` and
    the conversions (:meth:`to_wire`, :meth:`from_wire`, :meth:`numpy_value`,
    :meth:`needs_widening`)."""

    match_subclasses = True
    #: what the tensor is called in errors (``"torch.Tensor"``)
    what: ClassVar[str] = "tensor"
    relayed: ClassVar[type[RelayedFrameworkTensor]]
    widened: ClassVar[type[WidenedFrameworkTensor]]

    def supported_type(self) -> type:
        raise NotImplementedError

    def to_wire(self, obj: Any, /) -> tuple[str, np.ndarray[Any, Any]]:
        """The dtype name and a numpy array of ``obj``'s bits; ``TypeError``: cannot send."""
        raise NotImplementedError

    def from_wire(self, name: str, array: np.ndarray[Any, Any], /) -> Any:
        """The framework's tensor; ``ValueError`` for an unknown name or a wrong array."""
        raise NotImplementedError

    def numpy_value(self, name: str, array: np.ndarray[Any, Any], /) -> np.ndarray[Any, Any]:
        """What the server aggregates: the array, or the values widened to float32."""
        raise NotImplementedError

    def needs_widening(self, name: str, wire: np.dtype[Any]) -> bool:
        """Whether a ``name`` tensor travelling as ``wire`` is widened on the server (numpy
        lacks its dtype); ``ValueError`` for an unknown name or the wrong wire dtype."""
        raise NotImplementedError

    def decompose(self, obj: Any, ctx: Context) -> Any:
        if isinstance(obj, RelayedFrameworkTensor):
            return {"dtype": obj.dtype, "array": obj.ref}
        try:
            name, array = self.to_wire(obj)
        except TypeError as exc:
            raise FOBSError(str(exc)) from None
        return {"dtype": name, "array": array}

    def recompose(self, data: Any, ctx: Context) -> Any:
        if not isinstance(data, dict) or set(data) != {"dtype", "array"}:
            raise FOBSError(f"malformed {self.what}")
        name, array = data["dtype"], data["array"]
        if isinstance(array, DeferredTensor):
            if ctx.props.get("relay_tensors"):
                return self.relayed(name, array)
            try:
                widen = self.needs_widening(name, array.dtype)
            except ValueError as exc:
                raise FOBSError(f"malformed {self.what}: {exc}") from None
            if ctx.props.get("lazy_tensors"):
                return self.widened(name, array) if widen else array
            array = array.fetch(keep=False)
        try:
            if ctx.props.get("lazy_tensors"):
                return self.numpy_value(name, array)
            return self.from_wire(name, array)
        except ValueError as exc:
            raise FOBSError(f"malformed {self.what}: {exc}") from None


class FrameworkTensorAdapter(Generic[TensorT]):
    """A framework's :class:`~ember.streaming.adapters.TensorAdapter`: one safetensors stream
    per tensor, with its real dtype code (``BF16``...); see the module docstring.

    Subclasses set :attr:`framework`, :attr:`tensor`, :attr:`tensor_format`,
    :attr:`dtypes`, ``supports`` and the conversions (:meth:`to_wire`, :meth:`from_wire`);
    ``download_tensors = HatchTensorAdapter().download`` is the package's receiving face."""

    #: in "<framework> complex64 tensors have no safetensors dtype"
    framework: ClassVar[str] = "framework"
    #: in "cannot make a <tensor> from a F8_E8M0 stream"
    tensor: ClassVar[str] = "tensor"
    #: the name the adapter is registered under (``ember_tensor_adapters``: ``"pytorch"``)
    tensor_format: ClassVar[str] = ""
    #: the framework's dtype table: name -> (its dtype, the wire numpy dtype, the dtype the
    #: bits are viewed as, None where numpy has the dtype)
    dtypes: ClassVar[Mapping[str, tuple[Any, np.dtype[Any], Any]]] = {}
    #: dtype name -> safetensors code
    safetensors_codes: ClassVar[Mapping[str, str]] = SAFETENSORS_CODES
    #: report a ``TypeError`` of :meth:`to_wire` / ``ValueError`` of :meth:`from_wire` as a
    #: :class:`StreamingError` (False: let them through)
    wrap_errors: ClassVar[bool] = True
    _by_code: ClassVar[dict[str, str]] = {}
    _by_numpy: ClassVar[dict[np.dtype[Any], str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        codes, dtypes = cls.safetensors_codes, cls.dtypes
        cls._by_code = {code: name for name, code in codes.items() if name in dtypes}
        # plain numpy dtypes of streams that carry no code
        cls._by_numpy = {
            row[1]: name for name, row in dtypes.items() if name in codes and row[2] is None
        }

    def supports(self, value: Any) -> bool:
        raise NotImplementedError

    def to_wire(self, value: Any, /) -> tuple[str, np.ndarray[Any, Any]]:
        """The dtype name and a numpy array of the tensor's bits; ``TypeError``: cannot."""
        raise NotImplementedError

    def from_wire(self, name: str, array: np.ndarray[Any, Any], /) -> TensorT:
        """The framework's tensor of a wire array; ``ValueError`` for a wrong one."""
        raise NotImplementedError

    def download(
        self,
        from_site: str,
        ref_id: str,
        per_request_timeout: float | None = None,
        progress: Progress | None = None,
        fetcher: Fetcher | None = None,
    ) -> OrderedDict[str, TensorT]:
        """Pull every tensor of ``ref_id`` from ``from_site`` as this framework's tensors, in
        offered order, one at a time (chunked, checksummed, retried; ``per_request_timeout``
        per chunk)."""
        from ember.streaming import download_tensors  # the facade, which imports this

        got = download_tensors(
            from_site, ref_id, per_request_timeout, progress, fetcher, self.tensor_format
        )
        return OrderedDict(got)

    def to_stream(self, value: Any) -> tuple[np.ndarray[Any, Any], str | None]:
        try:
            name, bits = self.to_wire(value)
        except TypeError as exc:
            if not self.wrap_errors:
                raise
            raise StreamingError(f"cannot offer the tensor for download: {exc}") from None
        code = self.safetensors_codes.get(name)
        if code is None:
            raise StreamingError(
                f"{self.framework} {name} tensors have no safetensors dtype; send them in a message"
            )
        # np.ascontiguousarray would make a 0-d tensor 1-d
        return (bits if bits.flags.c_contiguous else bits.copy(order="C")), code

    def from_stream(self, array: np.ndarray[Any, Any], code: str | None) -> TensorT:
        name = self._by_code.get(code) if code is not None else self._by_numpy.get(array.dtype)
        if name is None:
            raise StreamingError(f"cannot make a {self.tensor} from a {code or array.dtype} stream")
        try:
            return self.from_wire(name, array)
        except ValueError as exc:
            if not self.wrap_errors:
                raise
            raise StreamingError(
                f"cannot make a {self.tensor} from a {code} stream: {exc}"
            ) from None
