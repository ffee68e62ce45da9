// x87 FPU instruction handlers (x87.cpp) and FXSAVE/FXRSTOR/LDMXCSR/STMXCSR
// (fxsave.cpp): registration entry points for fpu.cpp, and the checks shared
// with other FPU code.
#pragma once
#include "cpu/soft/cpu.h"
#include "x86/decode/insn.h"

namespace anykvm::soft::x87 {

void register_x87(x86::DispatchTable& t);
void register_fxsr(x86::DispatchTable& t);
void register_xsave(x86::DispatchTable& t);  // xsave.cpp

// Guest memory as byte strings, in 8/4/2/1-byte accesses (each goes through
// the Cpu accessors: limits, paging, MMIO). Offsets wrap at the address size.
void read_bytes(Cpu& c, uint8_t seg, uint64_t off, unsigned addrsize, uint8_t* buf, unsigned n);
void write_bytes(Cpu& c, uint8_t seg, uint64_t off, unsigned addrsize, const uint8_t* buf, unsigned n);

}  // namespace anykvm::soft::x87
