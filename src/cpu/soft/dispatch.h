// Binding decoded instructions to handlers (dispatch.cpp), for the engine loop.
#pragma once
#include "x86/decode/decoder.h"
#include "x86/decode/insn.h"

namespace anykvm::soft {
class Cpu;
// Sets in.fn from the dispatch table, or to the #UD / #GP / internal-error handler.
void bind_handler(x86::Insn& in, x86::DecodeStatus st);
// The handler of opcodes nobody registered: KVM_EXIT_INTERNAL_ERROR (emulation)
// with the length in data[0] and the bytes packed little-endian from data[1].
void h_unimplemented(Cpu& c, const x86::Insn& i);
// Was `in` decoded completely and bound to its opcode's handler (not to the
// #UD / #GP / unimplemented stand-ins bind_handler uses for the rest)?
bool bound_to_opcode_handler(const x86::Insn& in);
}  // namespace anykvm::soft
