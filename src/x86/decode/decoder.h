// Instruction decoder driven by the opcode catalogue (opcodes.def): legacy
// prefixes in any order and count, one-byte and 0F maps, 16- and 32-bit
// ModRM/SIB addressing, moffs and immediates (SDM vol. 2, ch. 2). Fills an
// Insn except Insn::fn (the engine binds handlers via DispatchTable).
// `mode` is the code size (16, 32; 64 reserved for REX decoding later).
// Leaves out: REX/64-bit, VEX, 0F 38/0F 3A.
#pragma once
#include <cstddef>
#include <cstdint>

#include "x86/decode/insn.h"
#include "x86/decode/opcodes.h"

namespace anykvm::x86 {

enum class DecodeStatus : uint8_t {
  Ok,
  Truncated,     // needs more bytes than `avail` (the caller fetches or faults); Insn::len = bytes needed
  TooLong,       // more than 15 bytes: #GP(0)
  Undefined,     // no row for this encoding: #UD
  LockInvalid,   // LOCK on a non-lockable form: #UD
};

constexpr unsigned k_max_insn_len = 15;

DecodeStatus decode(const uint8_t* bytes, size_t avail, unsigned mode, Insn& out);

// The catalogue row an Insn was decoded from (Insn::op).
const OpcodeRow& insn_row(const Insn& i);

// The dispatch key for a decoded instruction (most specific form).
OpKey insn_key(const Insn& i);

// Does this instruction end a decoded block?
bool insn_ends_block(const Insn& i);

}  // namespace anykvm::x86
