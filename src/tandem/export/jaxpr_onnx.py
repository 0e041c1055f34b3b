"""A JAX function -> an ONNX graph, by translating its jaxpr one primitive at a time.

Why a translator of our own (docs/deploy.md): a policy is a short chain of dense layers,
activations, normalisation and scaling, but tandem's policies differ in the details (SAC's
split head, SimbaV2's hypersphere, one-hot encodings, CFPI's Q-gradient step at act time).
Translating the traced jaxpr covers all of them with one table of ~40 primitives, keeps the
exported graph the very computation ``Policy.act`` runs, and needs only the ``onnx`` package
(jax2onnx, checked for issue 20, fixes the batch for SimbaV2 and downgrades orbax).

The batch axis is a symbolic dimension while tracing (``jax.export.symbolic_shape``), so the
graph takes any batch: wherever the jaxpr names a shape with the batch in it, the graph builds
that shape from ``Shape(input 0)[0]`` at run time. The parameters are the jaxpr's constants
and become the graph's initializers. A primitive outside the table raises
:class:`ExportError` naming it.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.extend.core import Literal

from tandem.errors import ExportError

try:  # the [export] extra
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # exercised by the CLI's missing-extra test
    onnx = TensorProto = helper = numpy_helper = None

OPSET = 18  # ReduceMax/ReduceMin take their axes as an input from 18 on, like ReduceSum

_DTYPES = {"float32": "FLOAT", "float64": "DOUBLE", "float16": "FLOAT16", "int32": "INT32",
           "int64": "INT64", "int8": "INT8", "uint8": "UINT8", "bool": "BOOL",
           "int16": "INT16", "uint32": "UINT32", "bfloat16": "BFLOAT16"}


def onnx_dtype(dtype) -> int:
    name = np.dtype(dtype).name if str(dtype) != "bfloat16" else "bfloat16"
    if name not in _DTYPES:
        raise ExportError(f"ONNX export: no ONNX type for dtype {name}")
    return getattr(TensorProto, _DTYPES[name])


def require_onnx() -> None:
    if onnx is None:
        raise ExportError("ONNX export needs the onnx package: pip install 'tandem-rl[export]'")


class _Graph:
    """The nodes, initializers and value names of the graph being built."""

    def __init__(self, batch_source: str):
        self.nodes: list = []
        self.inits: list = []
        self.n = 0
        self.batch_source = batch_source  # an input whose dim 0 is the batch
        self._batch: str | None = None

    def name(self, hint: str = "t") -> str:
        self.n += 1
        return f"{hint}_{self.n}"

    def node(self, op: str, inputs: Sequence[str], hint: str | None = None, n_out: int = 1,
             **attrs) -> Any:
        outs = [self.name(hint or op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, value, dtype=None, hint: str = "c") -> str:
        arr = np.asarray(value, dtype=dtype)
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def batch(self) -> str:
        """int64 [1]: the batch size, read from the first input's shape."""
        if self._batch is None:
            self._batch = self.node("Shape", [self.batch_source], "batch", start=0, end=1)
        return self._batch

    def shape(self, dims: Sequence[Any]) -> str:
        """An int64 shape tensor for ``dims``, where a symbolic dim is the batch."""
        if all(isinstance(d, (int, np.integer)) for d in dims):
            return self.const(np.asarray(dims, np.int64), hint="shape")
        parts, run = [], []
        for d in dims:
            if isinstance(d, (int, np.integer)):
                run.append(int(d))
                continue
            if str(d) != "N":
                raise ExportError(f"ONNX export: a shape with {d} (only the batch N is free)")
            if run:
                parts.append(self.const(np.asarray(run, np.int64), hint="shape"))
                run = []
            parts.append(self.batch())
        if run:
            parts.append(self.const(np.asarray(run, np.int64), hint="shape"))
        return parts[0] if len(parts) == 1 else self.node("Concat", parts, "shape", axis=0)


def _static(d) -> bool:
    return isinstance(d, (int, np.integer))


class _Translator:
    def __init__(self, graph: _Graph):
        self.g = graph
        self.env: dict = {}

    # ------------------------------------------------------------------ values
    def read(self, v) -> str:
        if isinstance(v, Literal):
            return self.g.const(np.asarray(v.val, dtype=v.aval.dtype), hint="lit")
        return self.env[v]

    def run(self, jaxpr, consts: Sequence[Any], args: Sequence[str]) -> list[str]:
        for var, c in zip(jaxpr.constvars, consts):
            self.env[var] = c if isinstance(c, str) else self.g.const(np.asarray(c), hint="w")
        for var, a in zip(jaxpr.invars, args):
            self.env[var] = a
        for eqn in jaxpr.eqns:
            ins = [self.read(v) for v in eqn.invars]
            outs = self.eqn(eqn, ins)
            for var, o in zip(eqn.outvars, outs):
                self.env[var] = o
        return [self.read(v) for v in jaxpr.outvars]

    def inline(self, closed, ins: list[str]) -> list[str]:
        """A nested jaxpr (jit, custom_jvp, ...) translated in place, in its own scope."""
        if hasattr(closed, "jaxpr") and hasattr(closed, "consts"):  # ClosedJaxpr
            return _Translator(self.g).run(closed.jaxpr, closed.consts, ins)
        return _Translator(self.g).run(closed, [], ins)

    # ------------------------------------------------------------------ primitives
    def eqn(self, eqn, ins: list[str]) -> list[str]:
        p, prm = eqn.primitive.name, eqn.params
        g = self.g
        out_aval = eqn.outvars[0].aval
        if p in ("pjit", "jit", "closed_call", "core_call", "remat", "checkpoint",
                 "custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"):
            sub = prm.get("jaxpr") or prm.get("call_jaxpr") or prm.get("fun_jaxpr")
            return self.inline(sub, ins)
        if p in _ELEMENTWISE:
            return [g.node(_ELEMENTWISE[p], ins)]
        if p in _UNARY:
            return [g.node(_UNARY[p], ins)]
        if p == "ne":
            return [g.node("Not", [g.node("Equal", ins)])]
        if p == "rsqrt":
            return [g.node("Reciprocal", [g.node("Sqrt", ins)])]
        if p == "log1p":
            one = g.const(np.asarray(1, out_aval.dtype))
            return [g.node("Log", [g.node("Add", [ins[0], one])])]
        if p == "expm1":
            one = g.const(np.asarray(1, out_aval.dtype))
            return [g.node("Sub", [g.node("Exp", ins), one])]
        if p == "square":
            return [g.node("Mul", [ins[0], ins[0]])]
        if p == "integer_pow":
            return [g.node("Pow", [ins[0], g.const(np.asarray(prm["y"], out_aval.dtype))])]
        if p == "clamp":  # clamp(lo, x, hi)
            return [g.node("Max", [g.node("Min", [ins[1], ins[2]]), ins[0]])]
        if p in ("copy", "copy_p", "reduce_precision", "optimization_barrier"):
            return [g.node("Identity", [i]) for i in ins]
        if p == "convert_element_type":
            return [g.node("Cast", ins, to=onnx_dtype(prm["new_dtype"]))]
        if p == "reshape":
            return [g.node("Reshape", [ins[0], g.shape(prm["new_sizes"])])]
        if p == "squeeze":
            return [g.node("Squeeze", [ins[0], g.const(np.asarray(prm["dimensions"],
                                                                     np.int64))])]
        if p == "expand_dims":
            return [g.node("Unsqueeze", [ins[0], g.const(np.asarray(prm["dimensions"],
                                                                       np.int64))])]
        if p == "broadcast_in_dim":
            return [self._broadcast(eqn, ins[0])]
        if p == "transpose":
            return [g.node("Transpose", ins, perm=list(prm["permutation"]))]
        if p == "concatenate":
            return [g.node("Concat", ins, axis=int(prm["dimension"]))]
        if p == "split":
            sizes = [int(s) for s in prm["sizes"]]
            outs = g.node("Split", [ins[0], g.const(np.asarray(sizes, np.int64))],
                          n_out=len(sizes), axis=int(prm["axis"]))
            return outs if isinstance(outs, list) else [outs]
        if p == "slice":
            return [self._slice(eqn, ins[0])]
        if p in _REDUCE:
            axes = g.const(np.asarray(prm["axes"], np.int64))
            return [g.node(_REDUCE[p], [ins[0], axes], keepdims=0)]
        if p == "argmax" or p == "argmin":
            (axis,) = prm["axes"]
            idx = g.node("ArgMax" if p == "argmax" else "ArgMin", ins, axis=int(axis),
                         keepdims=0, select_last_index=0)
            return [g.node("Cast", [idx], to=onnx_dtype(prm["index_dtype"]))]
        if p == "select_n":
            if len(ins) != 3:
                raise ExportError("ONNX export: select_n with more than two cases")
            pred = ins[0]
            if eqn.invars[0].aval.dtype != np.bool_:
                pred = g.node("Cast", [pred], to=TensorProto.BOOL)
            return [g.node("Where", [pred, ins[2], ins[1]])]
        if p == "iota":
            if not all(_static(d) for d in prm["shape"]):
                raise ExportError("ONNX export: iota over the batch axis")
            arr = jax.lax.broadcasted_iota(prm["dtype"], prm["shape"], prm["dimension"])
            return [g.const(np.asarray(arr), hint="iota")]
        if p == "dot_general":
            return [self._dot(eqn, ins)]
        if p == "stack":
            axis = g.const(np.asarray([prm["axis"]], np.int64))
            return [g.node("Concat", [g.node("Unsqueeze", [i, axis]) for i in ins],
                           axis=int(prm["axis"]))]
        if p == "gather":
            return [self._gather(eqn, ins)]
        if p == "scatter-add" or p == "scatter_add":
            return [self._scatter_add(eqn, ins)]
        if p == "stop_gradient":
            return [ins[0]]
        raise ExportError(f"ONNX export: the policy uses the JAX primitive '{p}', which the "
                          "exporter does not translate")

    def _broadcast(self, eqn, x: str) -> str:
        shape, dims = eqn.params["shape"], eqn.params["broadcast_dimensions"]
        in_shape = eqn.invars[0].aval.shape
        keep = [1] * len(shape)
        for i, d in enumerate(dims):
            keep[d] = in_shape[i]
        g = self.g
        if tuple(keep) != tuple(in_shape):
            x = g.node("Reshape", [x, g.shape(keep)])
        if tuple(keep) == tuple(shape):
            return x
        return g.node("Expand", [x, g.shape(shape)])

    def _slice(self, eqn, x: str) -> str:
        prm = eqn.params
        shape = eqn.invars[0].aval.shape
        starts, ends, axes = [], [], []
        for ax, (s, e, n) in enumerate(zip(prm["start_indices"], prm["limit_indices"], shape)):
            full = (not _static(e) and str(e) == str(n)) or (_static(e) and _static(n) and
                                                             int(e) == int(n))
            if int(s) == 0 and full:
                continue
            if not _static(e):
                raise ExportError("ONNX export: a slice of the batch axis")
            starts.append(int(s))
            ends.append(int(e))
            axes.append(ax)
        if not axes:
            return self.g.node("Identity", [x])
        g = self.g
        args = [x, g.const(np.asarray(starts, np.int64)), g.const(np.asarray(ends, np.int64)),
                g.const(np.asarray(axes, np.int64))]
        if prm.get("strides"):
            args.append(g.const(np.asarray([prm["strides"][a] for a in axes], np.int64)))
        return g.node("Slice", args)

    def _gather(self, eqn, ins: list[str]) -> str:
        """The two gathers policies make: indexing one axis with a (traced) scalar, e.g.
        ``x[:, 3]`` or ``x[..., 1:5]`` (a Slice), and ``take_along_axis`` over a batch axis,
        e.g. the best of several candidate actions per observation (GatherND)."""
        dn, prm = eqn.params["dimension_numbers"], eqn.params
        operand, idx = eqn.invars[0].aval, eqn.invars[1].aval
        g = self.g
        if not dn.operand_batching_dims and idx.shape == (1,) and \
                len(dn.start_index_map) == 1 and \
                tuple(dn.offset_dims) == tuple(range(operand.ndim - len(dn.collapsed_slice_dims))) \
                and set(dn.collapsed_slice_dims) <= set(dn.start_index_map) and \
                all(str(prm["slice_sizes"][d]) == str(operand.shape[d])
                    for d in range(operand.ndim) if d not in dn.start_index_map):
            (k,) = dn.start_index_map
            start = g.node("Cast", [ins[1]], to=TensorProto.INT64)
            end = g.node("Add", [start, g.const(np.asarray([int(prm["slice_sizes"][k])],
                                                            np.int64))])
            out = g.node("Slice", [ins[0], start, end, g.const(np.asarray([k], np.int64))])
            if dn.collapsed_slice_dims:
                out = g.node("Squeeze", [out, g.const(np.asarray(dn.collapsed_slice_dims,
                                                                 np.int64))])
            return out
        nb = len(dn.operand_batching_dims)
        if tuple(dn.operand_batching_dims) == tuple(range(nb)) and \
                tuple(dn.start_indices_batching_dims) == tuple(range(nb)) and \
                tuple(dn.collapsed_slice_dims) == tuple(dn.start_index_map) and \
                tuple(dn.start_index_map) == tuple(range(nb, nb + idx.shape[-1])) and \
                tuple(dn.offset_dims) == tuple(range(idx.ndim - 1, eqn.outvars[0].aval.ndim)) \
                and all(int(prm["slice_sizes"][d]) == operand.shape[d]
                        for d in range(nb + idx.shape[-1], operand.ndim)):
            return g.node("GatherND", [ins[0], g.node("Cast", [ins[1]], to=TensorProto.INT64)],
                          batch_dims=nb)
        raise ExportError(f"ONNX export: a gather the exporter does not translate ({dn})")

    def _scatter_add(self, eqn, ins: list[str]) -> str:
        """operand[..., i, ...] += updates with one (traced) index on one axis: what the
        gradient of ``x[:, i]`` makes (CFPI's action step); a one-hot mask along that axis."""
        dn = eqn.params["dimension_numbers"]
        operand, idx = eqn.invars[0].aval, eqn.invars[1].aval
        if idx.shape != (1,) or dn.operand_batching_dims or \
                len(dn.scatter_dims_to_operand_dims) != 1 or \
                tuple(dn.inserted_window_dims) != tuple(dn.scatter_dims_to_operand_dims) or \
                not _static(operand.shape[dn.inserted_window_dims[0]]):
            raise ExportError(f"ONNX export: a scatter the exporter does not translate ({dn})")
        g = self.g
        (k,) = dn.inserted_window_dims
        size = int(operand.shape[k])
        pos = np.arange(size, dtype=np.int32).reshape([size if d == k else 1
                                                       for d in range(operand.ndim)])
        hit = g.node("Equal", [g.const(pos), g.node("Cast", [ins[1]], to=TensorProto.INT32)])
        mask = g.node("Cast", [hit], to=onnx_dtype(operand.dtype))
        upd = g.node("Unsqueeze", [ins[2], g.const(np.asarray([k], np.int64))])
        return g.node("Add", [ins[0], g.node("Mul", [upd, mask])])

    def _dot(self, eqn, ins: list[str]) -> str:
        (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
        lhs, rhs = eqn.invars[0].aval, eqn.invars[1].aval
        g = self.g
        # the policies' common case, x [.., k] @ W [k, m]: MatMul
        if not lb and not rb and tuple(lc) == (lhs.ndim - 1,) and rhs.ndim == 2:
            w = ins[1] if tuple(rc) == (0,) else g.node("Transpose", [ins[1]], perm=[1, 0])
            out = g.node("MatMul", [ins[0], w])
        else:  # anything else (ensembles, gradients): Einsum with dot_general's output order
            letters = iter("abcdefghijklmnopqrstuvwxyz")
            ls = [next(letters) for _ in range(lhs.ndim)]
            rs = [None] * rhs.ndim
            for a, b in zip(lb, rb):
                rs[b] = ls[a]
            for a, b in zip(lc, rc):
                rs[b] = ls[a]
            rs = [c or next(letters) for c in rs]
            lfree = [ls[i] for i in range(lhs.ndim) if i not in lb and i not in lc]
            rfree = [rs[i] for i in range(rhs.ndim) if i not in rb and i not in rc]
            spec = f"{''.join(ls)},{''.join(rs)}->" + "".join(
                [ls[i] for i in lb] + lfree + rfree)
            out = g.node("Einsum", ins[:2], equation=spec)
        want = eqn.outvars[0].aval.dtype
        if want != np.result_type(lhs.dtype, rhs.dtype):
            out = g.node("Cast", [out], to=onnx_dtype(want))
        return out


_ELEMENTWISE = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max",
                "min": "Min", "pow": "Pow", "gt": "Greater", "lt": "Less",
                "ge": "GreaterOrEqual", "le": "LessOrEqual", "eq": "Equal", "and": "And",
                "or": "Or", "add_any": "Add"}
_UNARY = {"neg": "Neg", "exp": "Exp", "log": "Log", "tanh": "Tanh", "abs": "Abs",
          "sign": "Sign", "sqrt": "Sqrt", "floor": "Floor", "ceil": "Ceil",
          "logistic": "Sigmoid", "erf": "Erf", "sin": "Sin", "cos": "Cos", "not": "Not",
          "round": "Round"}
_REDUCE = {"reduce_sum": "ReduceSum", "reduce_max": "ReduceMax", "reduce_min": "ReduceMin",
           "reduce_prod": "ReduceProd"}


def _prune(graph: _Graph, outputs: Sequence[str]) -> None:
    """Drop the nodes and initializers no output depends on (a policy's jaxpr computes e.g.
    SAC's std, which the deterministic action does not use)."""
    needed, kept = set(outputs), []
    for node in reversed(graph.nodes):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    graph.nodes = kept[::-1]
    graph.inits = [t for t in graph.inits if t.name in needed]


def to_onnx(fn: Callable, inputs: Sequence[tuple[str, tuple, Any, Any]],
            outputs: Sequence[tuple[str, Any]], metadata: dict[str, str],
            doc: str = "") -> "onnx.ModelProto":
    """``fn(*arrays) -> tuple of arrays`` as an ONNX model with a dynamic batch axis N.

    ``inputs``: (name, shape without the batch, dtype ``fn`` takes, dtype the graph takes;
    a Cast joins them, e.g. int64 in the graph for JAX's int32). ``outputs``: (name, dtype of
    the graph's output; a Cast is added where ``fn``'s differs). ``metadata`` becomes the
    model's metadata_props."""
    require_onnx()
    (n,) = jax.export.symbolic_shape("N")
    specs = [jax.ShapeDtypeStruct((n, *shape), dt) for _, shape, dt, _ in inputs]
    try:
        closed = jax.make_jaxpr(fn)(*specs)
    except Exception as exc:  # noqa: BLE001 - any tracing failure is one export error
        raise ExportError(f"ONNX export: the policy could not be traced with a free batch "
                          f"axis ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
                          ) from None
    graph = _Graph(batch_source=inputs[0][0])
    args = []
    for (name, _, dt, graph_dt) in inputs:
        args.append(name if np.dtype(dt) == np.dtype(graph_dt) else
                    graph.node("Cast", [name], "in", to=onnx_dtype(dt)))
    outs = _Translator(graph).run(closed.jaxpr, closed.consts, args)
    if len(outs) != len(outputs):
        raise ExportError(f"ONNX export: the policy returns {len(outs)} arrays, "
                          f"{len(outputs)} expected")
    out_infos = []
    for o, var, (name, dt) in zip(outs, closed.jaxpr.outvars, outputs):
        src = var.aval.dtype
        graph.nodes.append(helper.make_node("Identity" if np.dtype(src) == np.dtype(dt)
                                            else "Cast", [o], [name],
                                            **({} if np.dtype(src) == np.dtype(dt) else
                                               {"to": onnx_dtype(dt)})))
        out_infos.append(helper.make_tensor_value_info(
            name, onnx_dtype(dt), ["N", *[int(d) for d in var.aval.shape[1:]]]))
    _prune(graph, [name for name, _ in outputs])
    in_infos = [helper.make_tensor_value_info(name, onnx_dtype(gdt), ["N", *shape])
                for name, shape, _, gdt in inputs]
    model = helper.make_model(
        helper.make_graph(graph.nodes, "policy", in_infos, out_infos, graph.inits,
                          doc_string=doc),
        opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tandem")
    model.ir_version = 8  # what onnxruntime 1.14+ reads; opset 18 needs >= 8
    for k, v in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model, full_check=True)
    return model


__all__ = ["OPSET", "to_onnx", "onnx_dtype", "require_onnx"]
