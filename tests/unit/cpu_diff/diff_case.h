// Differential testing of the software CPU against the host CPU (DESIGN.md
// style item 10): the types shared by the native runner, the engine runner and
// the comparison. A Case is one instruction (or a short sequence) with its
// input registers, EFLAGS and memory window; both sides run the SAME bytes in
// 32-bit code (natively in a compatibility-mode segment, in the engine in a
// flat 32-bit protected-mode guest) at the SAME linear addresses, so results
// compare directly. Leaves out: 64-bit code, x87/SSE state, segment loads.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace anykvm::difftest {

enum Reg : uint8_t { EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI };
// 8-bit register numbers as ModRM encodes them (SDM vol. 2, table 2-1).
enum Reg8 : uint8_t { AL, CL, DL, BL, AH, CH, DH, BH };

// EFLAGS bits (SDM vol. 1, 3.4.3).
namespace fl {
constexpr uint32_t CF = 1u << 0, FIXED1 = 1u << 1, PF = 1u << 2, AF = 1u << 4, ZF = 1u << 6, SF = 1u << 7,
                   TF = 1u << 8, IF = 1u << 9, DF = 1u << 10, OF = 1u << 11;
constexpr uint32_t STATUS = CF | PF | AF | ZF | SF | OF;
// What the comparison looks at: the status flags and DF (IF differs by design:
// user mode natively, CPL 0 in the engine).
constexpr uint32_t COMPARED = STATUS | DF;
}  // namespace fl

// Region layout, as offsets from the region base. The native process maps one
// RWX region below 4 GiB; the engine's guest RAM is mapped at the same
// guest-physical (= linear, flat segments) address with the same layout.
namespace layout {
constexpr uint32_t SIZE = 4u << 20;
constexpr uint32_t THUNK64 = 0x0000;     // native: 64-bit entry (C ABI)
constexpr uint32_t ENTRY32 = 0x0100;     // native: 32-bit entry reached by far call
constexpr uint32_t EXIT = 0x0200;        // native: far return; engine: HLT
constexpr uint32_t SLOTS = 0x0800;       // native bookkeeping words
constexpr uint32_t GDT = 0x1000;         // engine: flat GDT
constexpr uint32_t IDT = 0x1100;         // engine: 32 interrupt gates
constexpr uint32_t LDT = 0x1200;         // engine: the LDT holding SEL16's descriptor
constexpr uint32_t FAULT_STUBS = 0x1400; // engine: one HLT per vector, 16 bytes apart
constexpr uint32_t LOW_STACK_TOP = 0x2000;  // native: the far call's stack
constexpr uint32_t HSTACK_TOP = 0x3000;     // the frames' pushfd/popfd stack (both)
constexpr uint32_t OUT = 0x4000;            // per-case results
constexpr uint32_t SCRATCH_STACK = 0x2f000; // ESP for cases without a memory window
constexpr uint32_t MEM = 0x30000;           // per-case memory windows
constexpr uint32_t MEM_SIZE = 0x200000;
constexpr uint32_t CODE = 0x230000;         // the generated frames
constexpr uint32_t CODE_SIZE = SIZE - CODE;
constexpr uint32_t MAX_CASES = 4096;
constexpr uint32_t OUT_STRIDE = 36;  // 8 GPRs + EFLAGS
static_assert(OUT + MAX_CASES * OUT_STRIDE <= SCRATCH_STACK - 0x1000);
// 16-bit addressing: a Linux process cannot map the first 64 KiB, so cases
// with 16-bit effective addresses use GS (or ES, reloaded by the case) loaded
// with SEL16, an LDT data segment (base = region base + SEG16_BASE, 4 GiB
// limit, DPL 3) that both sides install: natively with modify_ldt(2), in the
// engine as LDT entry 0. Windows of such cases lie within 64 KiB of its base.
constexpr uint32_t SEG16_BASE = MEM;
constexpr uint32_t SEG16_SPAN = 0x10000;
constexpr uint16_t SEL16 = 0x0007;  // LDT index 0, TI = 1, RPL 3
// LDT entry 1: the same base with a byte-granular limit, for limit faults.
constexpr uint16_t SEL_LIMITED = 0x000f;
constexpr uint32_t LIMITED_LIMIT = 0x1ffff;
// LDT entry 2: expand-down (valid offsets EXPAND_DOWN_LIMIT+1 .. FFFFFFFFh,
// D/B = 1), based so that those offsets land in MEM.
constexpr uint16_t SEL_EXPAND_DOWN = 0x0017;
constexpr uint32_t EXPAND_DOWN_LIMIT = 0xfff0;
constexpr uint32_t EXPAND_DOWN_BASE = SEG16_BASE + 0x30000 - 0x10000;  // offset 10000h -> SEG16_BASE + 30000h
constexpr unsigned LDT_ENTRIES = 3;
}  // namespace layout

// Vectors that push an error code (SDM vol. 3, table 6-1).
inline bool vector_has_error_code(int v) { return v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21; }

// One instruction under test with its inputs.
struct Case {
  std::vector<uint8_t> code;    // the instruction(s); falls through at the end
  std::vector<uint8_t> relocs;  // offsets in `code` of 32-bit window offsets (made absolute)
  std::array<uint32_t, 8> gpr{};
  uint8_t gpr_rel = 0;          // bit r: gpr[r] is an offset into this case's window
  // 16-bit addressing through SEL16 (see layout::SEG16_BASE): the window lies
  // within 64 KiB of the segment base; bit r of gpr_rel16 adds the window's
  // offset from that base to gpr[r]; relocs16 are offsets in `code` of 16-bit
  // displacements that get the same offset added.
  bool seg16 = false;
  uint8_t gpr_rel16 = 0;
  std::vector<uint8_t> relocs16;
  uint32_t eflags = fl::FIXED1 | fl::IF;
  // Status flags the SDM defines for this instruction and these inputs
  // (unaffected flags count as defined: they must keep their input value).
  // The other status flags are compared in the CpuDiffUndefined group.
  uint32_t defined_flags = fl::STATUS;
  // Registers whose output the SDM leaves undefined (CpuDiffUndefined group).
  uint8_t undefined_regs = 0;
  // Registers the SDM leaves undefined but the host may keep (BSF/BSR with a
  // zero source: AMD documents "unchanged", Intel's parts do it too): compared
  // as defined when the host kept the input value, else as undefined.
  uint8_t defined_if_host_keeps = 0;
  std::vector<uint8_t> mem;  // initial window contents; empty: a pattern
};

// What one side produced for one case.
struct Outcome {
  std::array<uint32_t, 8> gpr{};  // after the case, or at the exception if one was raised
  uint32_t eflags = 0;
  int fault = -1;          // exception vector, -1 if none
  uint32_t fault_eip = 0;  // where it was raised (the instruction, or the next one for traps)
  uint32_t fault_error = 0;  // error code, for vectors that push one
  std::string note;        // anything unexpected (engine exit reason, harness fault)
};

// One batch of cases laid out as code + windows, shared by both runners.
struct BatchImage {
  uint32_t base = 0;
  uint32_t window = 0;  // bytes per case window
  std::vector<uint8_t> code;      // placed at base + layout::CODE
  std::vector<uint32_t> frame;    // absolute address of each case's frame
  std::vector<uint32_t> insn;     // absolute address of each case's instruction(s)
  std::vector<uint32_t> insn_end;
  std::vector<uint8_t> windows;   // n * window bytes placed at base + layout::MEM
  size_t n = 0;
  // The case whose frame contains `eip`, or -1.
  int case_at(uint32_t eip) const;
  uint32_t out_addr(size_t i) const { return base + layout::OUT + uint32_t(i) * layout::OUT_STRIDE; }
};

// A side that runs batches: fills one Outcome per case and the windows after.
class Runner {
 public:
  virtual ~Runner() = default;
  virtual const char* name() const = 0;
  virtual void run(const BatchImage& img, std::vector<Outcome>& out, std::vector<uint8_t>& windows) = 0;
};

}  // namespace anykvm::difftest
