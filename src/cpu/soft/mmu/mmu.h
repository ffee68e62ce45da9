// mmu/ internals shared with events/, exec/system and the engine loop:
// the page walker (SDM vol. 3, ch. 4), memory-map synchronisation and the MMIO
// exit protocol (MmioLog in cpu.h). Functions here are free functions on Cpu so
// cpu.h stays small. vCPU thread only.
#pragma once
#include <cstdint>
#include <span>

#include "cpu/soft/cpu.h"

namespace anykvm::soft {

enum class Access : uint8_t { Read, Write, Exec };

// #PF error-code bits (SDM vol. 3, 4.7).
namespace pferr {
constexpr uint32_t P = 1u << 0, W = 1u << 1, U = 1u << 2, RSVD = 1u << 3, ID = 1u << 4;
}

// Result of a successful linear -> guest-physical translation.
struct Translation {
  uint64_t gpa = 0;
  bool write_ok = false;  // a later write needs no walk (permission and D already set)
  bool exec_ok = false;   // instruction fetch allowed at this privilege
  bool global = false;
  uint64_t page_mask = ~uint64_t(0xfff);  // ~(size-1) of the guest page
};

// Walks the paging structures for `lin` (or identity-maps when CR0.PG = 0),
// setting A and D bits; throws #PF (recording the address in tlb.pf_addr).
Translation mmu_walk(Cpu& c, uint64_t lin, Access kind, bool user);

// Refresh the memory-map snapshot if machine/ published a new one (or revoked
// cached write permissions). The engine calls this on every KVM_RUN entry and
// at every block boundary; it costs one atomic load when nothing changed.
void mmu_sync(Cpu& c);

// After user space replaced architectural state (KVM_SET_SREGS, _DEBUGREGS,
// _MSRS for EFER, vCPU reset): drop every cached translation and reload what
// the hardware would have latched (PAE PDPTEs, breakpoint watch set).
void mmu_state_loaded(Cpu& c);

// Loads the PAE PDPTEs from CR3; false if one has reserved bits set (MOV CR3 -> #GP).
bool mmu_load_pdptes(Cpu& c);

// Guest-physical address of the code byte at `lin` for the current CPL,
// through the TLB's execute tag (filled on a miss). For the decoded-block
// cache's keys. Throws #PF; returns ~0 for code outside RAM.
uint64_t mmu_code_gpa_slow(Cpu& c, uint64_t lin);
inline uint64_t mmu_code_gpa(Cpu& c, uint64_t lin) {
  if (!c.long_mode()) lin = uint32_t(lin);
  const TlbEntry& e = c.tlb.entry(c.cpl == 3, lin);
  if (e.tag_exec == (lin & ~uint64_t(0xfff))) [[likely]]
    return e.gpa_page | (lin & 0xfff);
  return mmu_code_gpa_slow(c, lin);
}

// Region lookup in the current snapshot; nullptr = MMIO.
const cpu::RamRegion* mmu_find_region(Cpu& c, uint64_t gpa);

// One MMIO piece (<= 8 bytes) with the MmioLog replay rules of cpu.h.
// Reads fill `data`; may throw StopInsn.
void mmu_mmio(Cpu& c, uint64_t gpa, uint8_t* data, uint32_t len, bool write);

// Engine-loop helpers for the MMIO protocol:
// before re-executing an instruction after an exit (KVM_RUN entry):
void mmio_reenter(Cpu& c);
// data for the pending read (VcpuBackend::complete_mmio_read):
void mmio_complete_read(Cpu& c, std::span<const uint8_t> data);
// after an instruction retired (the next one starts with an empty log):
inline void mmio_retire(Cpu& c) {
  if (c.mmio_log.count) c.mmio_log.reset();
}

}  // namespace anykvm::soft
