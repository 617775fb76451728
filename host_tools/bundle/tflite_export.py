"""Write an int8 ``QuantizedNet`` as a ``.tflite`` flatbuffer, and run it in LiteRT to compare with ours.

One job: TFLite interoperability (extra ``litert``).  The file is written directly with
``flatbuffers`` and the generated schema classes of the ``tflite`` package; no TensorFlow.

Mapping (one image, batch 1, NHWC, all activations int8 with our scales and zero points):

* input: int8 (1, H, W, 3), scale 1/128, zero point 0: feed ``pixel - 128``.
* ``Conv``: CONV_2D with per-channel int8 filter (O, KH, KW, I) and int32 bias.  Symmetric padding
  that TFLite's SAME reproduces (stride 1, padding = kernel // 2) stays SAME; any other padding
  becomes an explicit PAD (padded with the input zero point, as ours) + VALID.
* ``MaxPool``: MAX_POOL_2D, VALID for floor mode; SAME for ceil mode (TFLite puts the extra
  window at the bottom/right and ignores padding in the max, exactly our ceil rule).
* ``Flatten``: RESHAPE to (1, 1, 1, N) (NHWC row-major: the same order as ours).
* ``Affine``: CONV_2D 1x1 on that (1, 1, 1, N) tensor (per-channel quantization, which every
  TFLite version supports for convolutions).
* ReLU: fused RELU, whose int8 range is [output_zero_point, 127] (= our act_min/act_max).

Multipliers: TFLite does not store them; it recomputes ``QuantizeMultiplier(double(in_scale) *
double(filter_scale[c]) / double(out_scale))`` from the float32 scales in the file.  For each
channel we search the float32 filter scale whose recomputed (multiplier, shift) equals ours;
``ExportReport.inexact_channels`` counts channels where none exists (then outputs may differ by
1 LSB: the requantization rounds a slightly different product).  ``snap_multipliers_to_float32``
makes a net's multipliers exactly representable (done by ``quantize.py`` before bundling).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wearface.kernels import nets
from wearface.kernels import qnet as qn
from wearface.kernels.quant import quantize_multiplier

from ..errors import QuantizeError

TFLITE_SCHEMA_VERSION = 3
#: how many float32 steps either side of the first guess are tried per channel
SCALE_SEARCH_ULPS = 64


@dataclass
class ExportReport:
    """What the export could not carry over exactly (empty lists = bit-exact by construction)."""

    channels: int = 0
    inexact_channels: int = 0
    notes: list = field(default_factory=list)


def _f32(x) -> np.float32:
    return np.float32(x)


def tflite_multiplier(in_scale: np.float32, filter_scale: np.float32, out_scale: np.float32) -> tuple[int, int]:
    """(multiplier, shift) as TFLite computes them from float32 scales (double arithmetic)."""
    return quantize_multiplier(float(in_scale) * float(filter_scale) / float(out_scale))


def filter_scales_for(multiplier: np.ndarray, shift: np.ndarray, in_scale: np.float32, out_scale: np.float32):
    """float32 per-channel filter scales that make TFLite recompute our (multiplier, shift); and
    the number of channels where no float32 value does."""
    scales = np.empty(len(multiplier), np.float32)
    inexact = 0
    for c, (m, s) in enumerate(zip(multiplier.tolist(), shift.tolist())):
        real = m * 2.0 ** (s - 31)
        guess = _f32(real * float(out_scale) / float(in_scale))
        best = guess
        if m == 0:
            scales[c] = np.float32(0.0)
            continue
        found = False
        candidates = [guess]
        up = down = guess
        for _ in range(SCALE_SEARCH_ULPS):
            up = np.nextafter(up, np.float32(np.inf))
            down = np.nextafter(down, np.float32(0))
            candidates += [up, down]
        for cand in candidates:
            if cand > 0 and tflite_multiplier(in_scale, cand, out_scale) == (m, s):
                best, found = cand, True
                break
        inexact += not found
        scales[c] = best
    return scales, inexact


def snap_multipliers_to_float32(qnet: qn.QuantizedNet) -> qn.QuantizedNet:
    """Recompute every multiplier/shift as TFLite would from float32 scales (in place; returns qnet).

    Uses ``float32(in_scale) * float32(weight_scale[c]) / float32(out_scale)`` in double, so an
    exported .tflite recomputes the same integers.  Changes a multiplier by at most a few units of
    2^-24 relative; biases are kept.
    """
    in_scale = _f32(qnet.input_scale)
    for q in qnet.layers:
        if not isinstance(q, (qn.QConv, qn.QAffine)):
            continue
        out_scale = _f32(q.output_scale)
        if q.weight_scale is None:
            raise QuantizeError(f"{q.spec.name}: no weight_scale; cannot snap multipliers")
        ws = np.asarray(q.weight_scale, np.float32)
        pairs = [tflite_multiplier(in_scale, w, out_scale) for w in ws]
        q.multiplier = np.array([m for m, _ in pairs], np.int32)
        q.shift = np.array([s for _, s in pairs], np.int32)
        in_scale = out_scale
    return qnet


# --- flatbuffer writing --------------------------------------------------------------------------

def _schema(table: str):
    """The generated module ``tflite.<table>`` (its builder functions; the package re-exports only classes)."""
    import importlib

    return importlib.import_module(f"tflite.{table}")


class _Graph:
    """Tensors, buffers and operators of one subgraph, serialised at the end."""

    def __init__(self):
        self.tensors: list[dict] = []
        self.buffers: list[bytes] = [b""]  # buffer 0: the empty sentinel TFLite expects
        self.ops: list[tuple] = []
        self.opcodes: list[tuple] = []

    def tensor(self, name, shape, dtype, scale=None, zero_point=None, data: np.ndarray | None = None,
               quantized_dimension: int = 0) -> int:
        buffer = 0
        if data is not None:
            self.buffers.append(np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<")).tobytes())
            buffer = len(self.buffers) - 1
        self.tensors.append(dict(name=name, shape=list(shape), dtype=dtype, buffer=buffer,
                                 scale=None if scale is None else np.atleast_1d(np.asarray(scale, np.float32)),
                                 zero_point=None if zero_point is None else np.atleast_1d(np.asarray(zero_point, np.int64)),
                                 qdim=quantized_dimension))
        return len(self.tensors) - 1

    def opcode(self, code: int, version: int) -> int:
        if (code, version) not in self.opcodes:
            self.opcodes.append((code, version))
        return self.opcodes.index((code, version))

    def op(self, code: int, version: int, inputs, outputs, options_type: int, options_fn):
        self.ops.append((self.opcode(code, version), list(inputs), list(outputs), options_type, options_fn))

    def serialise(self, name: str, description: str) -> bytes:
        import flatbuffers

        Buffer, Model, Operator, OperatorCode, QuantizationParameters, SubGraph, Tensor = (
            _schema(n) for n in ("Buffer", "Model", "Operator", "OperatorCode", "QuantizationParameters",
                                 "SubGraph", "Tensor"))

        b = flatbuffers.Builder(1 << 20)

        def ivec(start_fn, values, dtype=np.int32):
            return b.CreateNumpyVector(np.asarray(values, dtype))

        buffer_offsets = []
        for data in self.buffers:
            vec = b.CreateNumpyVector(np.frombuffer(data, np.uint8)) if data else None
            Buffer.BufferStart(b)
            if vec is not None:
                Buffer.BufferAddData(b, vec)
            buffer_offsets.append(Buffer.BufferEnd(b))

        tensor_offsets = []
        for t in self.tensors:
            tname = b.CreateString(t["name"])
            shape = ivec(None, t["shape"])
            quant = None
            if t["scale"] is not None:
                scale = b.CreateNumpyVector(t["scale"].astype(np.float32))
                zp = b.CreateNumpyVector(t["zero_point"].astype(np.int64))
                QuantizationParameters.QuantizationParametersStart(b)
                QuantizationParameters.QuantizationParametersAddScale(b, scale)
                QuantizationParameters.QuantizationParametersAddZeroPoint(b, zp)
                QuantizationParameters.QuantizationParametersAddQuantizedDimension(b, t["qdim"])
                quant = QuantizationParameters.QuantizationParametersEnd(b)
            Tensor.TensorStart(b)
            Tensor.TensorAddShape(b, shape)
            Tensor.TensorAddType(b, t["dtype"])
            Tensor.TensorAddBuffer(b, t["buffer"])
            Tensor.TensorAddName(b, tname)
            if quant is not None:
                Tensor.TensorAddQuantization(b, quant)
            tensor_offsets.append(Tensor.TensorEnd(b))

        op_offsets = []
        for opcode_index, inputs, outputs, options_type, options_fn in self.ops:
            options = options_fn(b)
            ins, outs = ivec(None, inputs), ivec(None, outputs)
            Operator.OperatorStart(b)
            Operator.OperatorAddOpcodeIndex(b, opcode_index)
            Operator.OperatorAddInputs(b, ins)
            Operator.OperatorAddOutputs(b, outs)
            if options is not None:
                Operator.OperatorAddBuiltinOptionsType(b, options_type)
                Operator.OperatorAddBuiltinOptions(b, options)
            op_offsets.append(Operator.OperatorEnd(b))

        def table_vector(start_fn, offsets):
            start_fn(b, len(offsets))
            for off in reversed(offsets):
                b.PrependUOffsetTRelative(off)
            return b.EndVector()

        sg_name = b.CreateString(name)
        tensors_vec = table_vector(SubGraph.SubGraphStartTensorsVector, tensor_offsets)
        ops_vec = table_vector(SubGraph.SubGraphStartOperatorsVector, op_offsets)
        inputs_vec = ivec(None, [0])
        outputs_vec = ivec(None, [len(self.tensors) - 1 if not hasattr(self, "output") else self.output])
        SubGraph.SubGraphStart(b)
        SubGraph.SubGraphAddTensors(b, tensors_vec)
        SubGraph.SubGraphAddInputs(b, inputs_vec)
        SubGraph.SubGraphAddOutputs(b, outputs_vec)
        SubGraph.SubGraphAddOperators(b, ops_vec)
        SubGraph.SubGraphAddName(b, sg_name)
        subgraph = SubGraph.SubGraphEnd(b)

        code_offsets = []
        for code, version in self.opcodes:
            OperatorCode.OperatorCodeStart(b)
            OperatorCode.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            OperatorCode.OperatorCodeAddBuiltinCode(b, code)
            OperatorCode.OperatorCodeAddVersion(b, version)
            code_offsets.append(OperatorCode.OperatorCodeEnd(b))

        desc = b.CreateString(description)
        codes_vec = table_vector(Model.ModelStartOperatorCodesVector, code_offsets)
        subgraphs_vec = table_vector(Model.ModelStartSubgraphsVector, [subgraph])
        buffers_vec = table_vector(Model.ModelStartBuffersVector, buffer_offsets)
        Model.ModelStart(b)
        Model.ModelAddVersion(b, TFLITE_SCHEMA_VERSION)
        Model.ModelAddOperatorCodes(b, codes_vec)
        Model.ModelAddSubgraphs(b, subgraphs_vec)
        Model.ModelAddDescription(b, desc)
        Model.ModelAddBuffers(b, buffers_vec)
        model = Model.ModelEnd(b)
        b.Finish(model, file_identifier=b"TFL3")
        return bytes(b.Output())


def _conv_options(padding: int, stride: int, relu: bool):
    Conv2DOptions = _schema("Conv2DOptions")
    from tflite.ActivationFunctionType import ActivationFunctionType

    def build(b):
        Conv2DOptions.Conv2DOptionsStart(b)
        Conv2DOptions.Conv2DOptionsAddPadding(b, padding)
        Conv2DOptions.Conv2DOptionsAddStrideW(b, stride)
        Conv2DOptions.Conv2DOptionsAddStrideH(b, stride)
        Conv2DOptions.Conv2DOptionsAddDilationWFactor(b, 1)
        Conv2DOptions.Conv2DOptionsAddDilationHFactor(b, 1)
        Conv2DOptions.Conv2DOptionsAddFusedActivationFunction(
            b, ActivationFunctionType.RELU if relu else ActivationFunctionType.NONE)
        return Conv2DOptions.Conv2DOptionsEnd(b)

    return build


def _pool_options(padding: int, size: int, stride: int):
    Pool2DOptions = _schema("Pool2DOptions")

    def build(b):
        Pool2DOptions.Pool2DOptionsStart(b)
        Pool2DOptions.Pool2DOptionsAddPadding(b, padding)
        Pool2DOptions.Pool2DOptionsAddStrideW(b, stride)
        Pool2DOptions.Pool2DOptionsAddStrideH(b, stride)
        Pool2DOptions.Pool2DOptionsAddFilterWidth(b, size)
        Pool2DOptions.Pool2DOptionsAddFilterHeight(b, size)
        return Pool2DOptions.Pool2DOptionsEnd(b)

    return build


def _reshape_options(shape):
    ReshapeOptions = _schema("ReshapeOptions")

    def build(b):
        vec = b.CreateNumpyVector(np.asarray(shape, np.int32))
        ReshapeOptions.ReshapeOptionsStart(b)
        ReshapeOptions.ReshapeOptionsAddNewShape(b, vec)
        return ReshapeOptions.ReshapeOptionsEnd(b)

    return build


def _pad_options():
    PadOptions = _schema("PadOptions")

    def build(b):
        PadOptions.PadOptionsStart(b)
        return PadOptions.PadOptionsEnd(b)

    return build


def export_tflite(qnet: qn.QuantizedNet) -> tuple[bytes, ExportReport]:
    """The .tflite bytes of ``qnet`` and what could not be carried over exactly."""
    from tflite.BuiltinOperator import BuiltinOperator as OP
    from tflite.BuiltinOptions import BuiltinOptions as OPT
    from tflite.Padding import Padding
    from tflite.TensorType import TensorType as TT

    g = _Graph()
    report = ExportReport()
    rows = list(nets.iter_counts(qnet.spec))
    scale, zp = _f32(qnet.input_scale), int(qnet.input_zero_point)
    x = g.tensor("input", (1, *qnet.spec.input_shape), TT.INT8, scale, zp)
    flat = False
    for q, row in zip(qnet.layers, rows):
        layer = q.spec
        name = layer.name
        if isinstance(q, qn.QMaxPool):
            ceil_same = layer.ceil
            out = g.tensor(name, (1, *row.out_shape), TT.INT8, scale, zp)
            if layer.ceil and layer.size != layer.stride:
                raise QuantizeError(f"{name}: ceil-mode pool with size != stride has no TFLite equivalent")
            g.op(OP.MAX_POOL_2D, 2, [x], [out], OPT.Pool2DOptions,
                 _pool_options(Padding.SAME if ceil_same else Padding.VALID, layer.size, layer.stride))
            x = out
        elif isinstance(q, qn.QFlatten):
            n = row.out_shape[0]
            shape_t = g.tensor(f"{name}/shape", (4,), TT.INT32, data=np.array([1, 1, 1, n], np.int32))
            out = g.tensor(name, (1, 1, 1, n), TT.INT8, scale, zp)
            g.op(OP.RESHAPE, 1, [x, shape_t], [out], OPT.ReshapeOptions, _reshape_options([1, 1, 1, n]))
            x, flat = out, True
        else:
            out_scale, out_zp = _f32(q.output_scale), int(q.output_zero_point)
            relu = getattr(layer, "relu", False)
            want_min = out_zp if relu else -128
            if (q.act_min, q.act_max) != (want_min, 127):
                raise QuantizeError(f"{name}: activation range [{q.act_min}, {q.act_max}] is not TFLite's "
                                    f"{'RELU' if relu else 'NONE'} range [{want_min}, 127]")
            fscales, inexact = filter_scales_for(np.asarray(q.multiplier), np.asarray(q.shift), scale, out_scale)
            report.channels += len(fscales)
            report.inexact_channels += inexact
            if isinstance(q, qn.QConv):
                weights = np.asarray(q.weights, np.int8)
                stride, pad = layer.stride, layer.padding
                same = stride == 1 and layer.kernel % 2 == 1 and pad == layer.kernel // 2
                if pad and not same:
                    h, w, c = row.in_shape
                    pads = g.tensor(f"{name}/paddings", (4, 2), TT.INT32,
                                    data=np.array([[0, 0], [pad, pad], [pad, pad], [0, 0]], np.int32))
                    padded = g.tensor(f"{name}/padded", (1, h + 2 * pad, w + 2 * pad, c), TT.INT8, scale, zp)
                    g.op(OP.PAD, 2, [x, pads], [padded], OPT.PadOptions, _pad_options())
                    x = padded
                padding = Padding.SAME if same else Padding.VALID
            else:
                weights = np.asarray(q.weights, np.int8).reshape(q.weights.shape[0], 1, 1, q.weights.shape[1])
                stride, padding = 1, Padding.VALID
                if not flat:
                    raise QuantizeError(f"{name}: affine layer without a Flatten before it")
            o = weights.shape[0]
            w_t = g.tensor(f"{name}/filter", weights.shape, TT.INT8, fscales, np.zeros(o), data=weights)
            bias_scales = (fscales.astype(np.float64) * float(scale)).astype(np.float32)
            b_t = g.tensor(f"{name}/bias", (o,), TT.INT32, bias_scales, np.zeros(o),
                           data=np.asarray(q.bias, np.int32))
            out_shape = (1, *row.out_shape) if isinstance(q, qn.QConv) else (1, 1, 1, o)
            out = g.tensor(name, out_shape, TT.INT8, out_scale, out_zp)
            g.op(OP.CONV_2D, 3, [x, w_t, b_t], [out], OPT.Conv2DOptions, _conv_options(padding, stride, relu))
            x, scale, zp = out, out_scale, out_zp
    g.output = x
    if report.inexact_channels:
        report.notes.append(f"{report.inexact_channels} of {report.channels} channels: no float32 filter scale "
                            f"reproduces our multiplier; TFLite rounds a slightly different product (<= 1 LSB)")
    desc = f"wearface int8 net {qnet.spec.name} ({qnet.spec.output}); input int8 = pixel - 128"
    return g.serialise(qnet.spec.name, desc), report


# --- running in LiteRT ---------------------------------------------------------------------------

#: LiteRT kernel sets: "reference" = TFLite's reference kernels (the specification), "builtin" =
#: its optimized builtin kernels without delegates, "default" = what Interpreter() picks (XNNPACK).
RESOLVERS = ("reference", "builtin", "default")


def load_interpreter(model_bytes: bytes, resolver: str = "builtin", threads: int = 1):
    """A LiteRT interpreter (``ai_edge_litert``, else ``tflite_runtime``); None if neither is installed."""
    try:
        from ai_edge_litert import interpreter as lite
    except ImportError:
        try:
            from tflite_runtime import interpreter as lite
        except ImportError:
            return None
    kinds = {"reference": lite.OpResolverType.BUILTIN_REF,
             "builtin": lite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
             "default": lite.OpResolverType.AUTO}
    if resolver not in kinds:
        raise QuantizeError(f"unknown LiteRT resolver {resolver!r}; expected one of {RESOLVERS}")
    interp = lite.Interpreter(model_content=model_bytes, num_threads=threads,
                              experimental_op_resolver_type=kinds[resolver])
    interp.allocate_tensors()
    return interp


def run_interpreter(interp, image_uint8: np.ndarray) -> np.ndarray:
    """int8 output (flattened to our output shape) of one uint8 (H, W, 3) image."""
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    x = (image_uint8.astype(np.int16) - nets.INPUT_ZERO_POINT).astype(np.int8)[None]
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    return interp.get_tensor(out["index"]).reshape(-1).copy()


def compare_with_litert(model_bytes: bytes, qnet: qn.QuantizedNet, images: list):
    """Yield one report line per LiteRT kernel set (``RESOLVERS``): how far LiteRT's int8 outputs of
    ``images`` are from our runtime's on ``qnet``; one line saying LiteRT is missing when it is."""
    from wearface.kernels.runtime import Int8Runtime

    ours = [Int8Runtime(qnet).run_int8(im).reshape(-1).astype(np.int32) for im in images]
    for resolver in RESOLVERS:
        interp = load_interpreter(model_bytes, resolver)
        if interp is None:
            yield "  LiteRT is not installed (pip install 'wearface[litert]'): no comparison"
            return
        diffs = [np.abs(o - run_interpreter(interp, im).astype(np.int32)) for o, im in zip(ours, images)]
        worst = max(int(d.max()) for d in diffs)
        count = sum(int((d > 0).sum()) for d in diffs)
        yield (f"  LiteRT {resolver:<9}: {len(images)} golden inputs, max |diff| {worst} LSB, "
               f"{count} of {sum(d.size for d in diffs)} outputs differ")
