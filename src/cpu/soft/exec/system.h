// System-architecture instructions (owned by the system area: exec/system*.cpp,
// mmu/, events/). Registration entry point for the dispatch table.
#pragma once
#include "x86/decode/insn.h"

namespace anykvm::soft {
class Cpu;
void register_system_handlers(x86::DispatchTable& t);
// I/O permission check for IN/OUT/INS/OUTS (IOPL, v86, TSS I/O bitmap): throws #GP.
void check_io(Cpu& cpu, uint16_t port, unsigned size);
}  // namespace anykvm::soft
