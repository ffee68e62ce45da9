// A decoded instruction and the dispatch table that binds handlers to it.
// The decoder (decoder.cpp, driven by opcodes.def) fills an Insn once; the
// engine caches Insns per guest code page and calls Insn::fn for each execution.
// Handlers live in cpu/soft/exec, cpu/soft/fpu and register themselves through
// DispatchTable; an opcode nobody registered runs `unimplemented`, which the
// engine turns into KVM_EXIT_INTERNAL_ERROR (emulation) with the bytes.
#pragma once
#include <cstdint>

namespace anykvm::soft { class Cpu; }

namespace anykvm::x86 {

struct Insn;
using Handler = void (*)(anykvm::soft::Cpu&, const Insn&);

enum class OpMap : uint8_t { OneByte = 0, TwoByte = 1, ThreeByte38 = 2, ThreeByte3A = 3 };
// The mandatory/legacy prefix that selects among SIMD forms (SDM vol. 2, 2.1.2).
enum class SimdPrefix : uint8_t { None = 0, P66 = 1, PF3 = 2, PF2 = 3 };
enum class RepPrefix : uint8_t { None = 0, Rep = 1 /*F3*/, Repne = 2 /*F2*/ };

constexpr uint8_t k_no_reg = 0xff;

struct Insn {
  Handler fn = nullptr;
  uint16_t op = 0;         // opcodes.def row id (x86::Op)
  uint8_t len = 0;         // total bytes, prefixes included (<= 15)
  uint8_t opsize = 4;      // operand size in bytes: 1 (byte forms use this too), 2, 4, 8
  uint8_t addrsize = 4;    // 2, 4, 8
  uint8_t seg = 3;         // effective segment of the memory operand (cpu::SegReg), override applied
  uint8_t seg_override = 0xff;  // explicit override or 0xff
  RepPrefix rep = RepPrefix::None;
  SimdPrefix simd = SimdPrefix::None;
  bool lock = false;
  bool has_modrm = false;
  bool mem = false;        // ModRM names memory (mod != 3)
  uint8_t opcode = 0;      // the last opcode byte
  OpMap map = OpMap::OneByte;
  uint8_t modrm = 0;
  uint8_t reg = 0;         // ModRM.reg (0-7; with REX.R 0-15)
  uint8_t rm = 0;          // ModRM.rm register number when !mem
  uint8_t base = k_no_reg;   // address base register (16-bit forms mapped: BX, BP, SI, DI)
  uint8_t index = k_no_reg;  // address index register
  uint8_t scale = 0;         // log2
  bool rip_relative = false;
  int64_t disp = 0;
  uint64_t imm = 0;        // first immediate (sign/zero extended per operand code)
  uint64_t imm2 = 0;       // second immediate (ENTER's imm8, far pointer selector)
};

}  // namespace anykvm::x86

namespace anykvm::x86 {

// What a handler is registered for. Every area registers the opcodes it owns;
// the decoder binds Insn::fn from the most specific matching entry
// (prefix + group + modrm class > group > opcode).
struct OpKey {
  OpMap map = OpMap::OneByte;
  uint8_t opcode = 0;
  int8_t group = -1;        // ModRM.reg for group opcodes (80, C0, D0, F6, FE, FF, 0F00, 0F01, 0FBA, D8-DF...), -1 = any
  SimdPrefix prefix = SimdPrefix::None;  // mandatory prefix for 0F SIMD opcodes; ignored unless `simd`
  bool simd = false;        // the row distinguishes None/66/F3/F2 forms
  int8_t modrm_class = -1;  // -1 any, 0 memory form (mod != 3), 1 register form (mod == 3)
};

// Handlers by operand size: byte-sized opcodes use h8 only; others pick by
// Insn::opsize (2, 4, 8). A null entry falls back to the unimplemented handler.
struct SizedHandler {
  Handler h8 = nullptr, h16 = nullptr, h32 = nullptr, h64 = nullptr;
};

class DispatchTable {
 public:
  // Same handler for every operand size.
  void set(const OpKey& key, Handler h);
  void set(const OpKey& key, const SizedHandler& h);
  // Used by the decoder.
  Handler lookup(const OpKey& exact, uint8_t opsize) const;

  // Implementation detail owned by decode/dispatch.cpp.
  struct Impl;
  DispatchTable();
  ~DispatchTable();
  Impl* impl;
};

// The process-wide table, filled once (thread-safe, on first use) by every
// area's register_* function (exec, system, fpu).
const DispatchTable& dispatch_table();

}  // namespace anykvm::x86
