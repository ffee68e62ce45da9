// The software TLB: linear page -> host pointer, one direct-mapped array per
// privilege class (supervisor / user), so a CPL change needs no flush. Each entry
// carries one tag per access kind (read, write, execute); a tag equals the
// page-aligned linear address only when that kind of access may go straight to
// host memory (permission checked, A/D bits already set, RAM not MMIO, not a
// write-protected code page, no data breakpoint on the page). Everything else
// takes the slow path in mmu/access.cpp. Flush rules: SDM vol. 3, 4.10.4.
// Also holds the memory-map snapshot the entries were built from, the PAE PDPTE
// cache and the address of the last #PF (CR2 is written at delivery).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "cpu/memory.h"

namespace anykvm::soft {

// Never equal to a page-aligned address.
constexpr uint64_t k_tlb_invalid = 1;

// The part every access reads (40 bytes, so both sets stay well inside L1D);
// the rest of an entry is in TlbCold, at the same index.
struct TlbEntry {
  uint64_t tag_read = k_tlb_invalid;
  uint64_t tag_write = k_tlb_invalid;
  uint64_t tag_exec = k_tlb_invalid;
  uintptr_t addend = 0;       // host pointer = linear address + addend
  uint64_t gpa_page = 0;      // guest-physical page it maps to
};
struct TlbCold {
  uint64_t vpage = k_tlb_invalid;  // linear page this entry maps
  uint64_t large_mask = 0;    // ~(size-1) of the guest page it came from (INVLPG on 2/4 MiB pages)
  bool global = false;
};

struct Tlb {
  static constexpr size_t k_bits = 8;
  static constexpr size_t k_entries = size_t(1) << k_bits;
  // [0] = supervisor accesses, [1] = user (CPL 3) accesses.
  std::array<std::array<TlbEntry, k_entries>, 2> sets{};
  std::array<std::array<TlbCold, k_entries>, 2> cold{};

  // Memory map the entries were filled from; refreshed when the source's
  // generation changes (mmu_sync).
  std::shared_ptr<const cpu::MemoryMap> map;
  uint64_t generation = 0;

  // PAE page-directory-pointer entries (SDM 4.4.1: loaded with CR3). Loaded
  // lazily on the first walk after a full/non-global flush.
  std::array<uint64_t, 4> pdpte{};
  bool pdpte_valid = false;

  bool have_large = false;    // some entry came from a 2/4 MiB page
  // Bumped by every flush, and by the engine when blocks are invalidated or
  // must revalidate (soft_vcpu.cpp): a compiled block end's link to the next
  // block, checked when made, holds while this is unchanged (jit.cpp).
  uint64_t link_gen = 0;
  bool watch_data = false;    // DR7 enables data breakpoints: no tags on watched pages
  uint64_t pf_addr = 0;       // linear address of the #PF being raised (CR2 at delivery)

  // Per-instruction debug scratch (events/debug.cpp), kept here because the
  // memory slow path records data-breakpoint hits.
  struct DebugScratch {
    uint8_t data_hits = 0;     // DR6.B0-B3 matched by data accesses of this instruction
    bool rf_at_start = false;  // EFLAGS.RF when the instruction began
    bool bs_deferred = false;  // single-step trap held back by a MOV/POP SS shadow
  } dbg;

  static size_t index(uint64_t lin) { return (lin >> 12) & (k_entries - 1); }
  TlbEntry& entry(bool user, uint64_t lin) { return sets[user][index(lin)]; }
  const TlbEntry& entry(bool user, uint64_t lin) const { return sets[user][index(lin)]; }

  TlbCold& cold_entry(bool user, uint64_t lin) { return cold[user][index(lin)]; }
  void clear(size_t set, size_t i) {
    sets[set][i] = TlbEntry{};
    cold[set][i] = TlbCold{};
  }

  void flush_all() {
    ++link_gen;
    for (auto& s : sets)
      for (auto& e : s) e = TlbEntry{};
    for (auto& s : cold)
      for (auto& e : s) e = TlbCold{};
    have_large = false;
    pdpte_valid = false;
  }
  void flush_nonglobal() {
    ++link_gen;
    for (size_t s = 0; s < 2; ++s)
      for (size_t i = 0; i < k_entries; ++i)
        if (!cold[s][i].global) clear(s, i);
    pdpte_valid = false;
  }
  void flush_page(uint64_t lin) {
    ++link_gen;
    uint64_t page = lin & ~uint64_t(0xfff);
    for (size_t s = 0; s < 2; ++s)
      if (cold[s][index(lin)].vpage == page) clear(s, index(lin));
    if (have_large) {
      for (size_t s = 0; s < 2; ++s)
        for (size_t i = 0; i < k_entries; ++i) {
          const TlbCold& e = cold[s][i];
          if (e.vpage != k_tlb_invalid && (e.vpage & e.large_mask) == (lin & e.large_mask)) clear(s, i);
        }
    }
  }
  // Stop direct writes to one guest-physical page (it now holds decoded code,
  // or a data breakpoint watches it). This vCPU's TLB only.
  void revoke_write_pfn(uint64_t pfn) {
    for (auto& s : sets)
      for (auto& e : s)
        if (e.tag_write != k_tlb_invalid && (e.gpa_page >> 12) == pfn) e.tag_write = k_tlb_invalid;
  }
};

}  // namespace anykvm::soft
