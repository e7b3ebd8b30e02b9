"""A cache prefetch hint for kernels that read scattered array elements.

Reading a few counts from each of thousands of CHIs is bound by memory latency: the CPU
overlaps only the misses of the next mask or two. Asking for the counts of a block of masks
ahead lets their misses overlap (3.5x faster bounds over per-mask boxes, 20,000 masks).
"""

from collections.abc import Callable, Sequence

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.base import BaseContext
from numba.core.typing.context import BaseContext as TypingContext
from numba.core.typing.templates import Signature
from numba.extending import intrinsic

# How numba lowers an intrinsic's call: (target context, builder, signature, arguments).
Codegen = Callable[[BaseContext, ir.IRBuilder, Signature, Sequence[ir.Value]], ir.Value]


@intrinsic
def prefetch(typingctx: TypingContext, array: types.Array,
             index: types.Integer) -> tuple[Signature, Codegen]:
    """Hint that ``array[index]`` (1-D) will be read soon. Never faults, returns nothing."""
    sig = types.void(array, index)

    def codegen(context: BaseContext, builder: ir.IRBuilder, signature: Signature,
                args: Sequence[ir.Value]) -> ir.Value:
        array_type, _ = signature.args
        data, i = args
        view = context.make_array(array_type)(context, builder, data)
        pointer = cgutils.get_item_pointer(context, builder, array_type, view, [i],
                                           wraparound=False, boundscheck=False)
        byte_pointer = ir.IntType(8).as_pointer()
        name = ("llvm.prefetch.p0" if getattr(byte_pointer, "is_opaque", False)
                else "llvm.prefetch.p0i8")
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]), name)
        # read (0), keep in all cache levels (3), data cache (1)
        builder.call(fn, [builder.bitcast(pointer, byte_pointer), ir.Constant(i32, 0),
                          ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen
