// The trace switch: ANYKVM_TRACE=insn,exits (comma list; "regs" adds the
// general registers to each instruction line) and ANYKVM_TRACE_FILE=path
// (default stderr). Read once per process. When no instruction trace is on the
// engine loop pays one predictable branch per block.
#pragma once
#include <cstdio>

#include "cpu/backend.h"
#include "x86/decode/insn.h"

namespace anykvm::soft {
class Cpu;

struct TraceConfig {
  bool insn = false;
  bool regs = false;
  bool exits = false;
  FILE* out = nullptr;
};
const TraceConfig& trace_config();

// One executed instruction: CS:EIP, bytes, Intel-syntax disassembly.
void trace_insn(Cpu& c, const x86::Insn& in);
void trace_exit(const Cpu& c, const cpu::VcpuExit& e);
}  // namespace anykvm::soft
