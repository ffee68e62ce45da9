// Debug registers (SDM vol. 3, ch. 17): DR0-DR3 instruction and data
// breakpoints per DR7 (L/G enables, R/W and LEN fields), DR6 status (B0-B3,
// BD, BS), EFLAGS.RF suppression of instruction breakpoints, single-step traps
// with TF, delayed across a MOV/POP SS shadow (6.8.3), and DR7.GD general
// detection. Data breakpoints are seen in the memory slow path: pages they
// cover get no TLB tags while DR7 enables one. Leaves out: I/O breakpoints
// (R/W = 10 with CR4.DE; IN/OUT have no hook yet). The TSS T-bit trap is in
// events/task.cpp.
#include "cpu/soft/events/debug.h"

#include "cpu/soft/cpu.h"
#include "cpu/soft/events/events.h"

namespace anykvm::soft {
namespace {

namespace dr7 {
constexpr uint64_t ENABLES = 0xff, GD = 1u << 13;
inline bool enabled(uint64_t v, unsigned n) { return (v >> (2 * n)) & 3; }
inline unsigned rw(uint64_t v, unsigned n) { return (v >> (16 + 4 * n)) & 3; }
inline unsigned len_code(uint64_t v, unsigned n) { return (v >> (18 + 4 * n)) & 3; }
}  // namespace dr7
namespace dr6 {
constexpr uint64_t B_ALL = 0xf, BD = 1u << 13, BS = 1u << 14;
}
enum class BpType : unsigned { Exec = 0, Write = 1, Io = 2, ReadWrite = 3 };

// LEN encoding: 00 = 1, 01 = 2, 11 = 4, 10 = 8 bytes (17.2.5).
uint64_t bp_len(unsigned code) {
  static constexpr uint64_t k_len[4] = {1, 2, 8, 4};
  return k_len[code];
}

bool data_bp(uint64_t v, unsigned n) {
  BpType t = BpType(dr7::rw(v, n));
  return dr7::enabled(v, n) && (t == BpType::Write || t == BpType::ReadWrite);
}

void raise_trap(Cpu& c, uint8_t bits) {
  c.dr6 |= bits;
  c.deliver_exception(fault(Vec::DB));
}

}  // namespace

void debug_before_insn(Cpu& c) {
  c.tlb.dbg.data_hits = 0;
  c.tlb.dbg.rf_at_start = c.eflags_rest & fl::RF;
  if (c.tlb.dbg.rf_at_start || !(c.dr7 & dr7::ENABLES)) return;
  uint64_t lin = uint32_t(c.seg[1].base + c.rip);
  uint8_t hits = 0;
  for (unsigned n = 0; n < 4; ++n) {
    if (dr7::enabled(c.dr7, n) && BpType(dr7::rw(c.dr7, n)) == BpType::Exec && uint32_t(c.dr[n]) == lin)
      hits |= uint8_t(1u << n);
  }
  if (hits) {
    // Instruction breakpoints are faults: RIP stays on the instruction (17.3.1.1).
    c.dr6 = (c.dr6 & ~dr6::B_ALL) | hits;
    throw fault(Vec::DB);
  }
}

void debug_after_insn(Cpu& c, bool tf_before) {
  auto& d = c.tlb.dbg;
  // RF protects exactly one instruction: clear it unless this one just loaded it (IRET).
  if (d.rf_at_start) c.eflags_rest &= ~fl::RF;
  bool step = tf_before || d.bs_deferred;
  uint8_t hits = d.data_hits;
  d.data_hits = 0;
  if (c.interrupt_shadow == 1 && (step || hits)) {
    // MOV SS / POP SS: debug traps wait until after the next instruction (6.8.3).
    d.bs_deferred = step;
    d.data_hits = hits;
    return;
  }
  d.bs_deferred = false;
  if (!step && !hits) return;
  if (step) c.dr6 |= dr6::BS;
  raise_trap(c, hits);
}

bool debug_page_watched(const Cpu& c, uint64_t lin_page) {
  for (unsigned n = 0; n < 4; ++n)
    if (data_bp(c.dr7, n) && (uint32_t(c.dr[n]) & ~0xfffu) == lin_page) return true;
  return false;
}

void debug_data_access(Cpu& c, uint64_t lin, uint32_t len, bool write) {
  for (unsigned n = 0; n < 4; ++n) {
    if (!data_bp(c.dr7, n)) continue;
    if (BpType(dr7::rw(c.dr7, n)) == BpType::Write && !write) continue;
    uint64_t blen = bp_len(dr7::len_code(c.dr7, n));
    uint64_t start = uint32_t(c.dr[n]) & ~(blen - 1);
    if (lin < start + blen && start < lin + len) c.tlb.dbg.data_hits |= uint8_t(1u << n);
  }
}

void debug_dr7_changed(Cpu& c) {
  bool watch = false;
  for (unsigned n = 0; n < 4; ++n) watch = watch || data_bp(c.dr7, n);
  if (watch || c.tlb.watch_data) c.tlb_flush_all();
  c.tlb.watch_data = watch;
}

void debug_check_gd(Cpu& c) {
  if (!(c.dr7 & dr7::GD)) return;
  // General detect: a fault before the MOV DR; the CPU clears GD for the handler (17.2.4).
  c.dr6 |= dr6::BD;
  c.dr7 &= ~dr7::GD;
  throw fault(Vec::DB);
}

}  // namespace anykvm::soft
