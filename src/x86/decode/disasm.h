// Intel-syntax disassembly of a decoded instruction, from the same catalogue
// the decoder uses (opcodes.def). For traces and test failure messages.
// `ip` is the address of the instruction (for relative branch targets).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "x86/decode/insn.h"

namespace anykvm::x86 {

// Writes a NUL-terminated string into buf (truncated to n); returns its length.
size_t disassemble(const Insn& i, uint64_t ip, char* buf, size_t n);
std::string disassemble(const Insn& i, uint64_t ip);

}  // namespace anykvm::x86
