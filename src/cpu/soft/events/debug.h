// Debug-register breakpoints and single-step (SDM vol. 3, ch. 17), owned by
// the system area. The engine loop calls these hooks only while debug_active().
#pragma once
#include <cstdint>

#include "cpu/soft/cpu.h"

namespace anykvm::soft {
// DR7 enables any breakpoint (L0-G3, bits 0-7), EFLAGS.TF or RF is set, or a
// single-step trap is held back by a MOV SS shadow: run one instruction at a
// time with the hooks. Inline: the block loop asks at every block.
inline bool debug_active(const Cpu& c) {
  constexpr uint64_t k_dr7_enables = 0xff;
  return (c.dr7 & k_dr7_enables) | (c.eflags_rest & (fl::TF | fl::RF)) | c.tlb.dbg.bs_deferred;
}
// Before an instruction executes: instruction breakpoints (#DB fault, honouring RF). Throws Fault.
void debug_before_insn(Cpu& cpu);
// After an instruction retired: data breakpoints hit during it and single-step (#DB trap).
// `tf_before` is EFLAGS.TF as it was when the instruction started.
void debug_after_insn(Cpu& cpu, bool tf_before);
// DR7 (or the TF/RF state) changed: recompute which pages are watched and
// flush the TLB so watched pages leave the fast path. Call after every DR7
// write, including KVM_SET_DEBUGREGS.
void debug_dr7_changed(Cpu& cpu);
// MOV to/from DRn with DR7.GD set: #DB fault with DR6.BD (17.2.4). Throws.
void debug_check_gd(Cpu& cpu);
// Memory-path hooks (mmu/access.cpp), used while tlb.watch_data is set:
// does a data breakpoint cover part of this linear page (its accesses then
// bypass the TLB fast path)?
bool debug_page_watched(const Cpu& cpu, uint64_t lin_page);
// A data access in the slow path: record matching breakpoints in DR6 (the #DB
// trap is raised after the instruction by debug_after_insn).
void debug_data_access(Cpu& cpu, uint64_t lin, uint32_t len, bool write);
}  // namespace anykvm::soft
